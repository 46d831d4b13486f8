// Package app is the vigil command: the vulnerability view of a cluster in the terminal and in
// the browser. It links no scan engine: `vigil scan` runs the vigil-scanner command.
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

// Exit codes of the vigil command; `vigil scan` exits with vigil-scanner's.
const (
	// ExitOK: the command did what it was asked.
	ExitOK = cli.ExitOK
	// ExitError: the command failed; it printed why on one line.
	ExitError = cli.ExitError
)

// Main runs the vigil command with args and returns its exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:   "vigil",
		Short: "Vigil: runtime vulnerability scanning for Kubernetes",
	}
	root.AddCommand(newVulnsCommand(stdout, stderr), newVulnCommand(stdout), newWorkloadCommand(stdout, stderr), newImagesCommand(stdout, stderr), newDashboardCommand(stdout))
	root.AddCommand(newScanCommand(stdout, stderr))
	usePluginName(root)
	// Ctrl-C or SIGTERM cancels the command's context.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cli.Execute(ctx, root, args, stdout, stderr)
}
