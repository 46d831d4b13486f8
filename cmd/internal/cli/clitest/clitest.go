// Package clitest checks, for each of Vigil's commands, what package cli promises: a command
// line a command does not take fails with one error line and one usage line, and --help runs
// nothing.
package clitest

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/cmd/internal/cli"
)

// Main is a command's entry point: it runs args and returns the exit code.
type Main func(args []string, stdout, stderr io.Writer) int

// Rejected is a command line that the command must refuse.
type Rejected struct {
	// Args is the command line, without the program name.
	Args []string
	// Error is how the error line starts.
	Error string
	// Usage is how the usage line starts.
	Usage string
}

// ExpectRejected runs each command line and checks that it exits with cli.ExitError, prints
// nothing on stdout, and exactly the error line and the usage line on stderr.
func ExpectRejected(t *testing.T, main Main, tests []Rejected) {
	t.Helper()
	for _, tc := range tests {
		t.Run(strings.Join(tc.Args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := main(tc.Args, &stdout, &stderr); code != cli.ExitError {
				t.Errorf("exit code %d, want %d", code, cli.ExitError)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], tc.Error) || !strings.HasPrefix(lines[1], tc.Usage) {
				t.Errorf("stderr:\n%s\nwant an error line %q and a usage line %q", stderr.String(), tc.Error, tc.Usage)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %s", stdout.String())
			}
		})
	}
}

// ExpectHelp runs each command line, which asks for help, and checks that it exits with
// cli.ExitOK after printing a usage on stdout.
func ExpectHelp(t *testing.T, main Main, commandLines ...[]string) {
	t.Helper()
	for _, args := range commandLines {
		var stdout, stderr bytes.Buffer
		if code := main(args, &stdout, &stderr); code != cli.ExitOK || !strings.Contains(stdout.String(), "Usage:") {
			t.Errorf("%v: exit code %d\nstdout: %s\nstderr: %s", args, code, stdout.String(), stderr.String())
		}
	}
}
