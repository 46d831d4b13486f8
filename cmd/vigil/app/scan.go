package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-dev/vigil/cmd/internal/cli"
)

// ScannerCommand is the command that holds the scan engine; `vigil scan` runs it.
const ScannerCommand = "vigil-scanner"

// newScanCommand is `vigil scan`, which runs `vigil-scanner scan` with the same arguments, as git
// runs git-*: the scan engine (syft and grype) is a program of its own, so that the view
// commands start small.
func newScanCommand(stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "scan SOURCE",
		Short: "Scan one image for known vulnerabilities (runs " + ScannerCommand + " scan)",
		Long: `Scan one image: build its SBOM with syft and match it with grype against a v6
vulnerability database, as the grype CLI does. The scan engine is the vigil-scanner command,
installed beside vigil or on PATH; vigil scan runs ` + "`vigil-scanner scan`" + ` with the same
arguments and exits with its exit code. ` + "`vigil scan --help`" + ` shows its flags.`,
		Args:               cobra.ArbitraryArgs,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			executable, err := os.Executable()
			if err != nil {
				// Without its own path, vigil looks for the scanner on PATH only.
				executable = ""
			}
			scanner, err := findScanner(executable)
			if err != nil {
				return err
			}
			return runScanner(cmd.Context(), scanner, append([]string{"scan"}, args...), stdout, stderr)
		},
	}
}

// findScanner finds the vigil-scanner command beside executable (the running vigil), or else
// on PATH.
func findScanner(executable string) (string, error) {
	if executable != "" {
		beside := filepath.Join(filepath.Dir(executable), ScannerCommand)
		if info, err := os.Stat(beside); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return beside, nil
		}
	}
	path, err := exec.LookPath(ScannerCommand)
	if err != nil {
		where, dir := "on PATH", "DIR"
		if executable != "" {
			dir = filepath.Dir(executable)
			where = "in " + dir + " or on PATH"
		}
		return "", fmt.Errorf("scanning needs the %s command, which is not installed %s (build it with: go build -o %s ./cmd/%s)",
			ScannerCommand, where, dir, ScannerCommand)
	}
	return path, nil
}

// runScanner runs scanner with args, the terminal's standard input and the given outputs, and
// ends with its exit code. Ctrl-C reaches the scanner from the terminal; a SIGTERM that only vigil
// received is passed on, so that the scanner removes what it unpacked.
func runScanner(ctx context.Context, scanner string, args []string, stdout, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, scanner, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		// The scanner printed why; its exit code is the answer (2: --fail-on was met).
		return &cli.ExitCode{Code: exit.ExitCode()}
	case errors.As(err, &exit):
		return fmt.Errorf("%s %s", ScannerCommand, exit.ProcessState)
	}
	return fmt.Errorf("running %s: %w", scanner, err)
}
