package sbom

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/anchore/syft/syft/linux"
	syftsbom "github.com/anchore/syft/syft/sbom"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestAnImageAtItsSizeBoundIsScannedAndOneByteOverIsNot(t *testing.T) {
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(archive, name.MustParseReference("vigil.test/app:1"), img); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	source := Source{Scheme: SchemeDockerArchive, Location: archive}
	if _, err := Generate(t.Context(), source, Options{MaxImageSize: info.Size()}); err != nil {
		t.Errorf("an image of exactly its bound: %v", err)
	}
	var tooLarge *TooLargeError
	if _, err := Generate(t.Context(), source, Options{MaxImageSize: info.Size() - 1}); !errors.As(err, &tooLarge) {
		t.Errorf("an image one byte over its bound: %v, want a TooLargeError", err)
	}
	// Each scan gave back the license scanner it used: it can be dropped once idle.
	licenseScanner.mu.Lock()
	defer licenseScanner.mu.Unlock()
	if licenseScanner.users != 0 {
		t.Errorf("the license scanner has %d users after the scans ended", licenseScanner.users)
	}
}

func TestTheDistroOfAnSBOM(t *testing.T) {
	tests := []struct {
		release *linux.Release
		want    string
	}{
		{nil, ""},
		{&linux.Release{ID: "debian", VersionID: "12", Version: "12 (bookworm)"}, "debian 12"},
		{&linux.Release{ID: "wolfi", Version: "20230201"}, "wolfi 20230201"},
		{&linux.Release{ID: "arch"}, "arch"},
	}
	for _, tc := range tests {
		result := &Result{SBOM: &syftsbom.SBOM{Artifacts: syftsbom.Artifacts{LinuxDistribution: tc.release}}}
		if got := result.Distro(); got != tc.want {
			t.Errorf("Distro() of %+v = %q, want %q", tc.release, got, tc.want)
		}
	}
}
