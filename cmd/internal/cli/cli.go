// Package cli is what Vigil's commands (vigil, vigil-scanner) share: arguments checked
// strictly, errors on one line with a usage line for a wrong command line, and exit codes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes shared by Vigil's commands.
const (
	// ExitOK: the command did what it was asked.
	ExitOK = 0
	// ExitError: the command failed; it printed why on one line.
	ExitError = 1
)

// ExitCode ends a command with Code. Message, when not empty, is printed as the command's
// one-line error; when empty, the command has said what it had to say already.
type ExitCode struct {
	Code    int
	Message string
}

func (e *ExitCode) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("exit code %d", e.Code)
	}
	return e.Message
}

// Execute runs root with args and returns the exit code. Errors go to stderr on one line,
// prefixed with root's name; a command line that a command does not take adds its usage line.
func Execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SilenceUsage = true
	root.SilenceErrors = true
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	strictArguments(root)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &usageError{cmd: cmd, err: err} })
	command, err := root.ExecuteContextC(ctx)
	if err != nil && command == root && !root.Runnable() {
		// The root only dispatches: any error of its own is an unknown command or argument.
		err = &usageError{cmd: root, err: err}
	}
	var exit *ExitCode
	var usage *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &exit):
		if exit.Message != "" {
			fmt.Fprintf(stderr, "%s: %s\n", root.Name(), OneLine(exit.Message))
		}
		return exit.Code
	case errors.As(err, &usage):
		line := usage.cmd.UseLine()
		if !usage.cmd.Runnable() {
			line = usage.cmd.CommandPath() + " COMMAND"
		}
		fmt.Fprintf(stderr, "%s: %s\nUsage: %s (see %s --help)\n", root.Name(), OneLine(usage.err.Error()), line, usage.cmd.CommandPath())
		return ExitError
	default:
		fmt.Fprintf(stderr, "%s: %s\n", root.Name(), OneLine(err.Error()))
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

// OneLine folds a multi-line message into one line.
func OneLine(message string) string {
	return strings.Join(strings.Fields(message), " ")
}
