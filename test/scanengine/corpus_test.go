package scanengine

import (
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/test/corpus"
)

// TestCorpusSameFindingsAsTheGrypeCLI scans every image of the real-image corpus (make corpus)
// with `vigil scan` and with the grype CLI, on the same database, and compares the
// vulnerabilities, packages, versions, types, fix states and fixed-in versions they report.
func TestCorpusSameFindingsAsTheGrypeCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("scans the whole corpus twice")
	}
	dir := corpus.Require(t)
	grype := grypeBinary(t)
	for _, image := range corpus.Images {
		t.Run(image.Name, func(t *testing.T) {
			source := "oci-dir:" + corpus.Layout(dir, image.Name)
			fromVigil := vigilFindings(t, source)
			fromGrype := grypeFindings(t, grype, source)
			if strings.Join(fromVigil, "\n") != strings.Join(fromGrype, "\n") {
				t.Errorf("vigil found:\n%s\ngrype found:\n%s", strings.Join(fromVigil, "\n"), strings.Join(fromGrype, "\n"))
			}
			if len(fromGrype) == 0 {
				t.Error("grype found nothing: the comparison shows nothing")
			}
			t.Logf("%d findings, the same from both", len(fromGrype))
		})
	}
}
