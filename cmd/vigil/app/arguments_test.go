package app

import (
	"testing"

	"github.com/vigil-dev/vigil/cmd/internal/cli/clitest"
)

func TestEveryCommandRejectsArgumentsItDoesNotTake(t *testing.T) {
	clitest.ExpectRejected(t, Main, []clitest.Rejected{
		{Args: []string{"vulsn"}, Error: `vigil: unknown command "vulsn" for "vigil"`, Usage: "Usage: vigil COMMAND (see vigil --help)"},
		{Args: []string{"vuln"}, Error: "vigil: accepts 1 arg(s), received 0", Usage: "Usage: vigil vuln ID [flags] (see vigil vuln --help)"},
		{Args: []string{"vulns", "a", "b"}, Error: "vigil: accepts at most 1 arg(s), received 2", Usage: "Usage: vigil vulns [SEARCH] [flags]"},
		{Args: []string{"dashboard", "--no-such-flag"}, Error: "vigil: unknown flag: --no-such-flag", Usage: "Usage: vigil dashboard [flags]"},
		{Args: []string{"scan-job"}, Error: `vigil: unknown command "scan-job" for "vigil"`, Usage: "Usage: vigil COMMAND"},
	})
}

func TestHelpRunsNothing(t *testing.T) {
	clitest.ExpectHelp(t, Main, []string{"--help"}, []string{"vulns", "--help"}, []string{"dashboard", "--help"})
}
