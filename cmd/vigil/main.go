// Command vigil is the user's view of the vulnerabilities that run in a cluster: `vigil vulns`,
// `vigil vuln ID`, `vigil workload`, `vigil images` and `vigil dashboard`; also a kubectl plugin
// (kubectl-vigil). `vigil scan IMAGE` runs the vigil-scanner command, which holds the scan engine.
package main

import (
	"os"

	"github.com/vigil-dev/vigil/cmd/vigil/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
