// Package app is the vigil command: its root, the scan subcommand, and the vulnerability view
// of a cluster in the terminal and in the browser.
package app

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes of the vigil command.
const (
	// ExitOK: the command did what it was asked.
	ExitOK = 0
	// ExitError: the command failed; it printed why on one line.
	ExitError = 1
	// ExitFailOn: the scan found a vulnerability at or above the --fail-on severity.
	ExitFailOn = 2
)

// errFailOn reports that --fail-on was met; the scan's output is complete.
type errFailOn struct{ message string }

func (e *errFailOn) Error() string { return e.message }

// Main runs the vigil command with args and returns its exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := &cobra.Command{
		Use:           "vigil",
		Short:         "Vigil: runtime vulnerability scanning for Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newScanCommand(stdout, stderr), newScanJobCommand(stderr))
	root.AddCommand(newVulnsCommand(stdout, stderr), newVulnCommand(stdout), newWorkloadCommand(stdout, stderr), newImagesCommand(stdout, stderr), newDashboardCommand(stdout))
	usePluginName(root)
	err := root.Execute()
	var failOn *errFailOn
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &failOn):
		fmt.Fprintf(stderr, "vigil: %s\n", failOn.message)
		return ExitFailOn
	default:
		fmt.Fprintf(stderr, "vigil: %s\n", oneLine(err.Error()))
		return ExitError
	}
}

// oneLine folds a multi-line error message into one line.
func oneLine(message string) string {
	return strings.Join(strings.Fields(message), " ")
}
