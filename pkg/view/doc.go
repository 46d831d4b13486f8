// Package view is Vigil's vulnerability view as a query: it lists the Vulnerabilities that run in
// the cluster with the caller's own credentials, and searches, filters, sorts and pages them.
// The terminal commands and the dashboard are two front ends of this one package, so that a
// search gives the same answer in both.
package view
