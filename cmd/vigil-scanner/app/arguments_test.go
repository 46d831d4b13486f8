package app

import (
	"testing"

	"github.com/vigil-dev/vigil/cmd/internal/cli/clitest"
)

func TestEveryCommandRejectsArgumentsItDoesNotTake(t *testing.T) {
	clitest.ExpectRejected(t, Main, []clitest.Rejected{
		{Args: []string{"scna", "alpine"}, Error: `vigil-scanner: unknown command "scna" for "vigil-scanner"`, Usage: "Usage: vigil-scanner COMMAND (see vigil-scanner --help)"},
		{Args: []string{"scan"}, Error: "vigil-scanner: accepts 1 arg(s), received 0", Usage: "Usage: vigil-scanner scan SOURCE [flags] (see vigil-scanner scan --help)"},
		{Args: []string{"scan", "a", "b"}, Error: "vigil-scanner: accepts 1 arg(s), received 2", Usage: "Usage: vigil-scanner scan SOURCE [flags]"},
		{Args: []string{"scan", "--no-such-flag", "alpine"}, Error: "vigil-scanner: unknown flag: --no-such-flag", Usage: "Usage: vigil-scanner scan SOURCE [flags]"},
		{Args: []string{"scan-job", "extra"}, Error: `vigil-scanner: unknown command "extra" for "vigil-scanner scan-job"`, Usage: "Usage: vigil-scanner scan-job [flags]"},
	})
}

func TestHelpRunsNothing(t *testing.T) {
	clitest.ExpectHelp(t, Main, []string{"--help"}, []string{"scan", "--help"}, []string{"scan-job", "--help"})
}
