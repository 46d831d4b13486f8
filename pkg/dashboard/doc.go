// Package dashboard is Vigil's read-only web view of the vulnerabilities that run in a cluster:
// the list sorted by severity, searched and filtered on the server through the view package,
// each vulnerability's detail page, and a CSV download, kept live through a watch that the
// browser follows with server-sent events.
//
// Run locally (`vigil dashboard`), it reads the cluster with the user's own credentials and
// answers loopback requests only. Run in the cluster, it reads with its service account and
// lets a request through only when its bearer token authenticates (TokenReview) as someone
// allowed to list vulnerabilities (SubjectAccessReview).
package dashboard
