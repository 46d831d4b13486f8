package sbom_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
)

// pushed serves img from a loopback registry and returns its reference.
func pushed(t testing.TB, img v1.Image, repository string) string {
	t.Helper()
	r := registry.Start(registry.Options{})
	t.Cleanup(r.Close)
	ref, err := r.Push(img, repository, "latest")
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// scratch points the scanner's temporary files at a fresh folder inside a parent folder that
// holds nothing else, and returns both.
func scratch(t *testing.T) (parent, dir string) {
	t.Helper()
	parent = t.TempDir()
	dir = filepath.Join(parent, "scratch")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", dir)
	return parent, dir
}

// A hostile image ends TooLarge with a reason that names the bound, and leaves nothing behind
// in the scratch folder.
func TestHostileImagesEndTooLarge(t *testing.T) {
	tests := []struct {
		name    string
		image   func() (v1.Image, error)
		options sbom.Options
		want    string
	}{
		{
			name: "decompression bomb",
			// 256 MiB of zeros, about 256 KiB compressed, against a 16 MiB bound
			image:   func() (v1.Image, error) { return images.Bomb(256 << 20) },
			options: sbom.Options{MaxImageSize: 64 << 20, MaxUncompressedSize: 16 << 20},
			want:    "the decompressed image is larger than the limit of 16.0 MiB (16777216 bytes)",
		},
		{
			name:    "a layer of many files",
			image:   func() (v1.Image, error) { return images.ManyFiles(50_000) },
			options: sbom.Options{MaxFiles: 1000},
			want:    "the image has at least 1001 files, above the limit of 1000",
		},
		{
			name:    "many layers",
			image:   func() (v1.Image, error) { return images.ManyLayers(20) },
			options: sbom.Options{MaxLayers: 10},
			want:    "the image has 20 layers, above the limit of 10",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := tc.image()
			if err != nil {
				t.Fatal(err)
			}
			ref := pushed(t, img, "hostile")
			_, dir := scratch(t)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			_, err = sbom.Generate(ctx, sbom.Source{Scheme: sbom.SchemeRegistry, Location: ref}, tc.options)
			var tooLarge *sbom.TooLargeError
			if !errors.As(err, &tooLarge) {
				t.Fatalf("Generate() error = %v, want a *TooLargeError", err)
			}
			if reason, message := sbom.Explain(err, "ScanFailed"); reason != sbom.ReasonTooLarge || message != tc.want {
				t.Errorf("Explain() = %q, %q; want %q, %q", reason, message, sbom.ReasonTooLarge, tc.want)
			}
			if left := filesUnder(t, dir); len(left) > 0 {
				t.Errorf("the scan left files behind: %v", left)
			}
		})
	}
}

// Tar entries and zip entries that name paths outside the image write nothing outside the
// scratch folder, and symbolic link loops end.
func TestHostileImagesStayInsideTheScratchFolder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		image func() (v1.Image, error)
	}{
		{"path traversal", images.PathTraversal},
		{"symlink loops", images.SymlinkLoops},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := tc.image()
			if err != nil {
				t.Fatal(err)
			}
			ref := pushed(t, img, "hostile")
			parent, dir := scratch(t)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := sbom.Generate(ctx, sbom.Source{Scheme: sbom.SchemeRegistry, Location: ref}, sbom.Options{})
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(90 * time.Second):
				t.Fatal("the scan did not end: a link loop is followed without end")
			}
			// the scan may fail on such an image; what matters is where it wrote and that it ended
			t.Logf("Generate() error = %v", err)
			for _, path := range filesUnder(t, parent) {
				if !strings.HasPrefix(path, dir+string(filepath.Separator)) {
					t.Errorf("the scan wrote %s, outside its scratch folder", path)
				}
				if strings.Contains(path, images.EscapeMarker) {
					t.Errorf("the scan wrote a file the image named to escape: %s", path)
				}
			}
			for _, outside := range []string{
				"/" + images.EscapeMarker + "-tar-parent", "/tmp/" + images.EscapeMarker + "-tar-absolute",
				"/" + images.EscapeMarker + "-tar-dotdot", "/tmp/" + images.EscapeMarker + "-through-symlink",
				"/" + images.EscapeMarker + "-zip-parent", "/tmp/" + images.EscapeMarker + "-zip-absolute",
				"/" + images.EscapeMarker + "-zip-dotdot",
				filepath.Join(parent, "..", images.EscapeMarker+"-tar-parent"),
			} {
				if _, err := os.Lstat(outside); err == nil {
					t.Errorf("the scan wrote %s", outside)
				}
			}
		})
	}
}

// filesUnder lists every file and link under dir.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !entry.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
