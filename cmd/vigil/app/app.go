// Package app is the vigil command: its root, the scan subcommand, and the vulnerability view
// of a cluster in the terminal and in the browser.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

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
	strictArguments(root)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{cmd: cmd, err: err} })
	// Ctrl-C or SIGTERM cancels the command's context: a scan stops and removes what it unpacked.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	command, err := root.ExecuteContextC(ctx)
	if err != nil && command == root && !root.Runnable() {
		// The root only dispatches: any error of its own is an unknown command or argument.
		err = &usageError{cmd: root, err: err}
	}
	var failOn *errFailOn
	var usage *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &failOn):
		fmt.Fprintf(stderr, "vigil: %s\n", failOn.message)
		return ExitFailOn
	case errors.As(err, &usage):
		line := usage.cmd.UseLine()
		if !usage.cmd.Runnable() {
			line = usage.cmd.CommandPath() + " COMMAND"
		}
		fmt.Fprintf(stderr, "vigil: %s\nUsage: %s (see %s --help)\n", oneLine(usage.err.Error()), line, usage.cmd.CommandPath())
		return ExitError
	default:
		fmt.Fprintf(stderr, "vigil: %s\n", oneLine(err.Error()))
		return ExitError
	}
}

// usageError is a command line that a command does not take: an unknown command, flag or
// argument, or a wrong count of arguments.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

// strictArguments makes cmd and its subcommands reject arguments they do not take: a runnable
// command without its own rule takes none. Root commands that only dispatch keep cobra's check of
// subcommand names.
func strictArguments(cmd *cobra.Command) {
	validate := cmd.Args
	if validate == nil && cmd.Runnable() {
		validate = cobra.NoArgs
	}
	if validate != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := validate(c, args); err != nil {
				return &usageError{cmd: c, err: err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		strictArguments(sub)
	}
}

// oneLine folds a multi-line error message into one line.
func oneLine(message string) string {
	return strings.Join(strings.Fields(message), " ")
}
