// Command vigil is Vigil's scanner: `vigil scan IMAGE` scans one image the way the grype CLI
// does, with the same syft cataloging and grype matching that Vigil runs in the cluster.
package main

import (
	"os"

	"github.com/vigil-dev/vigil/cmd/vigil/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
