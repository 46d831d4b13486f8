// Package namespace holds the reconciler that sets up, in every namespace, exactly the RBAC that
// scanning needs there: a RoleBinding that lets Vigil's service account read service accounts
// and pull secrets by name. Namespaces created later and OpenShift projects are set up as they
// appear; a namespace that opts out (vigil.dev/scanning=disabled) loses the RoleBinding.
package namespace
