// Package app is the vigil-scanner command: `scan`, which scans one image the way the grype CLI
// does, and `scan-job`, which the manager's scan Jobs run. It links the scan engine (syft and
// grype); the vigil command, the user's view of a cluster, does not.
package app

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vigil-dev/vigil/cmd/internal/cli"
)

// Exit codes of the vigil-scanner command.
const (
	// ExitOK: the command did what it was asked.
	ExitOK = cli.ExitOK
	// ExitError: the command failed; it printed why on one line.
	ExitError = cli.ExitError
	// ExitFailOn: the scan found a vulnerability at or above the --fail-on severity.
	ExitFailOn = 2
)

// Main runs the vigil-scanner command with args and returns its exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:   "vigil-scanner",
		Short: "Vigil's scan engine: scan one image, or run a scan Job",
	}
	root.AddCommand(newScanCommand(stdout, stderr), newScanJobCommand(stderr))
	// Ctrl-C or SIGTERM cancels the command's context: a scan stops and removes what it unpacked.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Execute(ctx, root, args, stdout, stderr)
}
