package app

import (
	"bytes"
	"strings"
	"testing"
)

func TestEveryCommandRejectsArgumentsItDoesNotTake(t *testing.T) {
	tests := []struct {
		args      []string
		wantError string
		wantUsage string
	}{
		{[]string{"scna", "alpine"}, `vigil-scanner: unknown command "scna" for "vigil-scanner"`, "Usage: vigil-scanner COMMAND (see vigil-scanner --help)"},
		{[]string{"scan"}, "vigil-scanner: accepts 1 arg(s), received 0", "Usage: vigil-scanner scan SOURCE [flags] (see vigil-scanner scan --help)"},
		{[]string{"scan", "a", "b"}, "vigil-scanner: accepts 1 arg(s), received 2", "Usage: vigil-scanner scan SOURCE [flags]"},
		{[]string{"scan", "--no-such-flag", "alpine"}, "vigil-scanner: unknown flag: --no-such-flag", "Usage: vigil-scanner scan SOURCE [flags]"},
		{[]string{"scan-job", "extra"}, `vigil-scanner: unknown command "extra" for "vigil-scanner scan-job"`, "Usage: vigil-scanner scan-job [flags]"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Main(tc.args, &stdout, &stderr); code != ExitError {
				t.Errorf("exit code %d, want %d", code, ExitError)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], tc.wantError) || !strings.HasPrefix(lines[1], tc.wantUsage) {
				t.Errorf("stderr:\n%s\nwant an error line %q and a usage line %q", stderr.String(), tc.wantError, tc.wantUsage)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: %s", stdout.String())
			}
		})
	}
}

func TestHelpRunsNothing(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"scan", "--help"}, {"scan-job", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := Main(args, &stdout, &stderr); code != ExitOK || !strings.Contains(stdout.String(), "Usage:") {
			t.Errorf("vigil-scanner %v: exit code %d\nstdout: %s\nstderr: %s", args, code, stdout.String(), stderr.String())
		}
	}
}
