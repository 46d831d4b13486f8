package scanengine

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/test/corpus"
	"github.com/vigil-dev/vigil/test/fixtures/images"
)

// TestTheDocumentAndItsJSONMatchAlike matches each fixture image's SBOM twice: as syft built it
// (`vigil scan`, like the grype CLI) and as the syft JSON that the cluster stores and matches
// again (like `grype sbom:FILE`). Both must report the same findings and grype's same matches,
// artifacts included; with the corpus built (make corpus), its images too.
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
		t.Run(name, func(t *testing.T) {
			source, err := sbom.ParseSource(input)
			if err != nil {
				t.Fatal(err)
			}
			generated, err := sbom.Generate(context.Background(), source, sbom.Options{})
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
			if name != "clean" && len(fromJSON.Findings) == 0 {
				t.Error("nothing found: the comparison shows nothing")
			}
		})
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
