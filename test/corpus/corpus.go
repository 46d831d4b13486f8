// Package corpus names the images of Vigil's scan corpus: real images made from Debian's
// packages, real npm, Python and Java packages and a Go binary built from real modules, plus the
// synthetic 5,000-package image. hack/build-corpus.sh (`make corpus`) builds them once, as OCI
// layouts, into a cache outside the repository; tests and benchmarks that need them skip while
// the corpus is not built.
package corpus

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/vigil-dev/vigil/test/fixtures/images"
)

// Image is one image of the corpus.
type Image struct {
	// Name is the image's folder under the corpus's layouts.
	Name string
	// Description says what the image holds.
	Description string
	// Large marks the largest images, which the scan targets are set for.
	Large bool
}

// Images are the corpus's images, smallest first.
var Images = []Image{
	{Name: "go-app", Description: "a Go binary built from real modules (go-containerregistry's crane, golang.org/x/text v0.3.7)"},
	{Name: "debian-minbase", Description: "debootstrap --variant=minbase bookworm"},
	{Name: "python-app", Description: "Debian bookworm with python3 and Debian's python3-* libraries, and an application"},
	{Name: "synthetic-5000", Description: "a synthetic Node.js application of 5,000 packages"},
	{Name: "node-app", Description: "Debian bookworm and a lockfile-pinned npm tree of a few thousand packages", Large: true},
	{Name: "debian-jdk", Description: "Debian bookworm with Debian's OpenJDK 17", Large: true},
	{Name: "java-app", Description: "Debian's OpenJDK 17 and a fat jar nesting the jars Debian ships", Large: true},
}

// doneFile marks a complete corpus.
const doneFile = "layouts/.done"

// Dir is the corpus's folder: $VIGIL_CACHE_DIR/corpus, by default ~/.cache/vigil/corpus, as
// hack/build-corpus.sh writes it.
func Dir() string {
	cache := os.Getenv("VIGIL_CACHE_DIR")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				home = os.TempDir()
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "vigil")
	}
	return filepath.Join(cache, "corpus")
}

// Layout is the folder of the named image's OCI layout in the corpus at dir.
func Layout(dir, name string) string {
	return filepath.Join(dir, "layouts", name)
}

// MarkDone records that the corpus at dir is complete.
func MarkDone(dir string) error {
	return os.WriteFile(filepath.Join(dir, doneFile), nil, 0o644)
}

// Built returns the corpus's folder and whether the corpus is built there.
func Built() (string, bool) {
	dir := Dir()
	_, err := os.Stat(filepath.Join(dir, doneFile))
	return dir, err == nil
}

// Require returns the corpus's folder, and skips tb, saying how to build it, when the corpus is
// not built.
func Require(tb testing.TB) string {
	tb.Helper()
	dir, ok := Built()
	if !ok {
		tb.Skipf("the scan corpus is not built in %s; run 'make corpus' to build it", dir)
	}
	return dir
}

// Unique is the named image of the corpus at dir with one more layer, which holds marker and the
// time: an image whose digest was never scanned, for benchmarks that time a first scan.
func Unique(dir, name, marker string) (v1.Image, error) {
	index, err := layout.ImageIndexFromPath(Layout(dir, name))
	if err != nil {
		return nil, err
	}
	manifest, err := index.IndexManifest()
	if err != nil {
		return nil, err
	}
	base, err := index.Image(manifest.Manifests[0].Digest)
	if err != nil {
		return nil, err
	}
	return images.Append(base, images.Layer{"/etc/vigil-bench": []byte(fmt.Sprintf("%s %d", marker, time.Now().UnixNano()))})
}
