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
		{[]string{"vulsn"}, `vigil: unknown command "vulsn" for "vigil"`, "Usage: vigil COMMAND (see vigil --help)"},
		{[]string{"vuln"}, "vigil: accepts 1 arg(s), received 0", "Usage: vigil vuln ID [flags] (see vigil vuln --help)"},
		{[]string{"vulns", "a", "b"}, "vigil: accepts at most 1 arg(s), received 2", "Usage: vigil vulns [SEARCH] [flags]"},
		{[]string{"dashboard", "--no-such-flag"}, "vigil: unknown flag: --no-such-flag", "Usage: vigil dashboard [flags]"},
		{[]string{"scan-job"}, `vigil: unknown command "scan-job" for "vigil"`, "Usage: vigil COMMAND"},
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
	for _, args := range [][]string{{"--help"}, {"vulns", "--help"}, {"dashboard", "--help"}} {
		var stdout, stderr bytes.Buffer
		if code := Main(args, &stdout, &stderr); code != ExitOK || !strings.Contains(stdout.String(), "Usage:") {
			t.Errorf("vigil %v: exit code %d\nstdout: %s\nstderr: %s", args, code, stdout.String(), stderr.String())
		}
	}
}
