// Package findings holds the reconciler of Vulnerability objects: it joins the containers that
// run now (from the Pod watch) with the findings of their images (from the scan reconciler) and
// keeps one Vulnerability per vulnerability ID that runs, created when the first vulnerable
// container starts and deleted when the last one stops.
package findings
