// Command vigil-scanner is Vigil's scan engine: `vigil-scanner scan IMAGE` scans one image the
// way the grype CLI does, with the same syft cataloging and grype matching that Vigil runs in
// the cluster, and `vigil-scanner scan-job` is what the manager's scan Jobs run. `vigil scan`
// runs it.
package main

import (
	"os"

	"github.com/vigil-dev/vigil/cmd/vigil-scanner/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
