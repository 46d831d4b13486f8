package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeScanner writes a vigil-scanner into dir that prints its arguments one a line, says
// something on standard error, and exits with code.
func fakeScanner(t *testing.T, dir, code string) string {
	t.Helper()
	path := filepath.Join(dir, ScannerCommand)
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\"\necho 'scanner progress' >&2\nexit " + code + "\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVigilScanRunsTheScannerWithItsArgumentsOutputsAndExitCode(t *testing.T) {
	tests := []struct {
		code     string
		wantCode int
	}{
		{"0", ExitOK},
		{"1", ExitError},
		{"2", 2}, // --fail-on met
	}
	for _, tc := range tests {
		t.Run("exit "+tc.code, func(t *testing.T) {
			dir := t.TempDir()
			fakeScanner(t, dir, tc.code)
			t.Setenv("PATH", dir)
			var stdout, stderr bytes.Buffer
			args := []string{"scan", "oci-dir:./my layout", "--db", "/db", "--fail-on", "high", "-o", "json", "--help"}
			if code := Main(args, &stdout, &stderr); code != tc.wantCode {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.wantCode, stderr.String())
			}
			if want := "scan\noci-dir:./my layout\n--db\n/db\n--fail-on\nhigh\n-o\njson\n--help\n"; stdout.String() != want {
				t.Errorf("the scanner got\n%s\nwant\n%s", stdout.String(), want)
			}
			if stderr.String() != "scanner progress\n" {
				t.Errorf("stderr %q: vigil adds nothing to what the scanner says", stderr.String())
			}
		})
	}
}

func TestVigilScanSaysOnOneLineThatTheScannerIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"scan", "alpine"}, &stdout, &stderr); code != ExitError {
		t.Errorf("exit code %d, want %d", code, ExitError)
	}
	message := stderr.String()
	if !strings.HasPrefix(message, "vigil: scanning needs the vigil-scanner command, which is not installed in ") ||
		strings.Count(message, "\n") != 1 || !strings.Contains(message, "go build -o ") || stdout.Len() != 0 {
		t.Errorf("stderr %q, stdout %q: want one line that names vigil-scanner and how to install it", message, stdout.String())
	}
}

func TestTheScannerBesideVigilComesBeforeTheOneOnPath(t *testing.T) {
	installed, onPath, empty := t.TempDir(), t.TempDir(), t.TempDir()
	beside := fakeScanner(t, installed, "0")
	elsewhere := fakeScanner(t, onPath, "0")
	notExecutable := t.TempDir()
	if err := os.WriteFile(filepath.Join(notExecutable, ScannerCommand), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		executable string
		path       string
		want       string // "" for an error
	}{
		{"beside vigil", filepath.Join(installed, "vigil"), onPath, beside},
		{"beside a kubectl plugin", filepath.Join(installed, "kubectl-vigil"), empty, beside},
		{"on PATH", filepath.Join(empty, "vigil"), onPath, elsewhere},
		{"not executable beside vigil", filepath.Join(notExecutable, "vigil"), onPath, elsewhere},
		{"vigil's path unknown", "", onPath, elsewhere},
		{"nowhere", filepath.Join(empty, "vigil"), empty, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", tc.path)
			got, err := findScanner(tc.executable)
			switch {
			case tc.want == "" && (err == nil || !strings.Contains(err.Error(), ScannerCommand)):
				t.Errorf("findScanner = %q, %v; want an error naming %s", got, err, ScannerCommand)
			case tc.want != "" && (err != nil || got != tc.want):
				t.Errorf("findScanner = %q, %v; want %s", got, err, tc.want)
			}
		})
	}
}
