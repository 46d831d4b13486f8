// Command demo runs Vigil locally on a real API server with sample workloads and prints the
// vulnerability view: `make demo`, or `make demo DEMO_FLAGS=--once` to print it and exit.
package main

import (
	"os"

	"github.com/vigil-dev/vigil/cmd/demo/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
