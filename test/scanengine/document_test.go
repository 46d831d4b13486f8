package scanengine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/test/corpus"
	"github.com/vigil-dev/vigil/test/fixtures/images"
)

// TestTheDocumentAndItsJSONMatchAlike matches each fixture image's SBOM twice: as syft built it
// (`vigil scan`, like the grype CLI) and as the syft JSON that the cluster stores and matches
// again (like `grype sbom:FILE`). Both must report the same findings and grype's same matches,
// artifacts included, for the SBOM built for matching and for the whole one (`vigil scan
// --sbom`); with the corpus built (make corpus), its images too.
func TestTheDocumentAndItsJSONMatchAlike(t *testing.T) {
	sources := map[string]string{}
	for _, tc := range slices.Concat(vulnerableImages, []fixtureImage{{"clean", images.Clean}}) {
		img, err := tc.recipe()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := images.WriteOCILayout(dir, img); err != nil {
			t.Fatal(err)
		}
		sources[tc.name] = "oci-dir:" + dir
	}
	if dir, ok := corpus.Built(); ok && !testing.Short() {
		for _, image := range corpus.Images {
			sources["corpus/"+image.Name] = "oci-dir:" + corpus.Layout(dir, image.Name)
		}
	}
	matcher := match.NewMatcher(provider, database)
	for name, input := range sources {
		for _, full := range []bool{false, true} {
			if full && strings.HasPrefix(name, "corpus/") {
				continue // the whole SBOM of the fixture images is enough; the corpus's takes minutes
			}
			t.Run(fmt.Sprintf("%s/full=%t", name, full), func(t *testing.T) {
				matchBothWays(t, matcher, input, sbom.Options{FullSBOM: full}, name != "clean")
			})
		}
	}
}

// matchBothWays generates the SBOM of input and matches its document and its JSON, which must
// give the same findings and grype matches; wantFindings says the image has some.
func matchBothWays(t *testing.T, matcher *match.Matcher, input string, options sbom.Options, wantFindings bool) {
	t.Helper()
	source, err := sbom.ParseSource(input)
	if err != nil {
		t.Fatal(err)
	}
	generated, err := sbom.Generate(context.Background(), source, options)
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := matcher.Match(context.Background(), generated.JSON)
	if err != nil {
		t.Fatal(err)
	}
	fromDocument, err := matcher.MatchDocument(context.Background(), generated.SBOM)
	if err != nil {
		t.Fatal(err)
	}
	if fromDocument.Packages != fromJSON.Packages || fromDocument.Distro != fromJSON.Distro {
		t.Errorf("the document: %d packages of %q; its JSON: %d packages of %q",
			fromDocument.Packages, fromDocument.Distro, fromJSON.Packages, fromJSON.Distro)
	}
	for what, pair := range map[string][2]any{
		"findings":         {fromDocument.Findings, fromJSON.Findings},
		"matches":          {fromDocument.Document.Matches, fromJSON.Document.Matches},
		"ignored matches":  {fromDocument.Document.IgnoredMatches, fromJSON.Document.IgnoredMatches},
		"the distribution": {fromDocument.Document.Distro, fromJSON.Document.Distro},
	} {
		got, want := marshal(t, pair[0]), marshal(t, pair[1])
		if got != want {
			t.Errorf("%s of the document:\n%s\nof its JSON:\n%s", what, got, want)
		}
	}
	if wantFindings && len(fromJSON.Findings) == 0 {
		t.Error("nothing found: the comparison shows nothing")
	}
}

func marshal(t *testing.T, value any) string {
	t.Helper()
	encoded, err := json.MarshalIndent(value, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(encoded)
}
