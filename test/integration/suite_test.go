// Package integration holds Vigil's integration tests: user stories run against a real
// kube-apiserver and etcd (see test/testenv). They are skipped with -short.
package integration

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/vigil-dev/vigil/test/testenv"
)

// env is the control plane that every test of the package shares.
var env *testenv.Environment

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("Skipping the integration tests in -short mode")
		os.Exit(0)
	}
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "Starting the test control plane: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	closeTheWorld()
	testenv.RemoveBinaries()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "Stopping the test control plane: %v\n", err)
	}
	os.Exit(code)
}

// isolate starts the story with no ImageScan and no Vulnerability left by an earlier one, and
// removes its own when it ends (testenv.Environment.Isolate). Call it first in every story.
func isolate(t *testing.T) {
	t.Helper()
	env.Isolate(t)
}
