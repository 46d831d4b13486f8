package sbom

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft/linux"
	syftsbom "github.com/anchore/syft/syft/sbom"
	syftsource "github.com/anchore/syft/syft/source"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// randomImage is an image of the default platform with layers of random files.
func randomImage(t *testing.T, byteSize, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(byteSize, layers)
	if err != nil {
		t.Fatal(err)
	}
	platform, err := v1.ParsePlatform(DefaultPlatform)
	if err != nil {
		t.Fatal(err)
	}
	config, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	config.OS, config.Architecture = platform.OS, platform.Architecture
	if img, err = mutate.ConfigFile(img, config); err != nil {
		t.Fatal(err)
	}
	return img
}

// randomArchive writes an image of one layer of random files as a docker archive, and returns
// its path.
func randomArchive(t *testing.T) string {
	t.Helper()
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(archive, name.MustParseReference("vigil.test/app:1"), img); err != nil {
		t.Fatal(err)
	}
	return archive
}

func TestAnImageAtItsSizeBoundIsScannedAndOneByteOverIsNot(t *testing.T) {
	archive := randomArchive(t)
	info, err := os.Stat(archive)
	if err != nil {
		t.Fatal(err)
	}
	source := Source{Scheme: SchemeDockerArchive, Location: archive}
	result, err := Generate(t.Context(), source, Options{MaxImageSize: info.Size()})
	if err != nil {
		t.Fatalf("an image of exactly its bound: %v", err)
	}
	if result.ImageSize != info.Size() || len(result.JSON) == 0 || result.SBOM == nil {
		t.Errorf("the result: image size %d (want %d), %d bytes of JSON", result.ImageSize, info.Size(), len(result.JSON))
	}
	var tooLarge *TooLargeError
	if _, err := Generate(t.Context(), source, Options{MaxImageSize: info.Size() - 1}); !errors.As(err, &tooLarge) {
		t.Errorf("an image one byte over its bound: %v, want a TooLargeError", err)
	}
	// Each scan gave back the license scanner it used: it can be dropped once idle, and is kept
	// meanwhile for the next scan.
	time.Sleep(100 * time.Millisecond)
	licenseScanner.mu.Lock()
	defer licenseScanner.mu.Unlock()
	if licenseScanner.users != 0 {
		t.Errorf("the license scanner has %d users after the scans ended", licenseScanner.users)
	}
	if licenseScanner.ctx == nil {
		t.Error("the license scanner was dropped at once, not kept for the next scan")
	}
}

func TestAnOCILayoutIsReadWithinItsBoundsAndABrokenArchiveSaysSo(t *testing.T) {
	img := randomImage(t, 4096, 1)
	source := Source{Scheme: SchemeOCIDir, Location: writeLayout(t, img)}
	result, err := Generate(t.Context(), source, Options{})
	if err != nil {
		t.Fatalf("the layout: %v", err)
	}
	expectManifest(t, result, img)
	if _, err := Generate(t.Context(), source, Options{MaxImageSize: 4096}); !errors.As(err, new(*TooLargeError)) {
		t.Errorf("the layout above its size bound (its blobs): %v, want a TooLargeError", err)
	}
	// Vigil's own reader reads a layout, so its bounds hold (syft's reader has none).
	var tooLarge *TooLargeError
	if _, err := Generate(t.Context(), source, Options{MaxUncompressedSize: 1024}); !errors.As(err, &tooLarge) {
		t.Errorf("the layout above its decompressed bound: %v, want a TooLargeError", err)
	} else if err.Error() != tooLarge.Error() {
		t.Errorf("the layout above its decompressed bound: %q, want the bound said as is: %q", err, tooLarge)
	}

	broken := filepath.Join(t.TempDir(), "broken.tar")
	if err := os.WriteFile(broken, []byte("not a tar archive"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(t.Context(), Source{Scheme: SchemeDockerArchive, Location: broken}, Options{}); err == nil ||
		!strings.Contains(err.Error(), "reading docker-archive:"+broken) {
		t.Errorf("a broken archive: %v, want an error naming it", err)
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

func TestARegistryImageIsMeasuredBeforeItIsPulled(t *testing.T) {
	img := randomImage(t, 2048, 2)
	var blobs atomic.Int32
	registryHandler := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobs.Add(1)
		}
		registryHandler.ServeHTTP(w, r)
	}))
	defer server.Close()
	host := strings.TrimPrefix(server.URL, "http://")
	ref, err := name.ParseReference(host + "/shop/api:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	var size int64
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, layer := range layers {
		layerSize, err := layer.Size()
		if err != nil {
			t.Fatal(err)
		}
		size += layerSize
	}
	options := Options{Registries: RegistryAccessOf([]string{host}, nil), Timeout: 10 * time.Second}
	source := Source{Scheme: SchemeRegistry, Location: ref.String()}

	options.MaxImageSize = size - 1
	var tooLarge *TooLargeError
	if _, err := Generate(t.Context(), source, options); !errors.As(err, &tooLarge) || tooLarge.Size < size {
		t.Fatalf("an image above its bound: %v, want a TooLargeError of at least %d bytes", err, size)
	}
	if n := blobs.Load(); n != 0 {
		t.Errorf("%d blobs were pulled of an image too large", n)
	}

	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if resolved, err := Resolve(t.Context(), ref.String(), options); err != nil || resolved != digest.String() {
		t.Errorf("Resolve = %s, %v; want %s", resolved, err, digest)
	}
	if n := blobs.Load(); n != 0 {
		t.Errorf("resolving pulled %d blobs", n)
	}

	options.MaxImageSize = 0
	options.MaxLayers = 1
	if _, err := Generate(t.Context(), source, options); !errors.As(err, &tooLarge) || tooLarge.Unit != "layers" {
		t.Errorf("an image of 2 layers, bound 1: %v, want a TooLargeError in layers", err)
	}
	if n := blobs.Load(); n != 0 {
		t.Errorf("%d blobs were pulled of an image with too many layers", n)
	}
	options.MaxLayers = 2
	result, err := Generate(t.Context(), source, options)
	if err != nil {
		t.Fatal(err)
	}
	if result.ImageSize < size || len(result.JSON) == 0 {
		t.Errorf("the result: image size %d, want at least the layers' %d; %d bytes of JSON", result.ImageSize, size, len(result.JSON))
	}
	expectManifest(t, result, img)
	if blobs.Load() == 0 {
		t.Error("no blob was pulled for the scan")
	}
}

func TestAnSBOMAboveItsBoundIsTooLargeWithItsSize(t *testing.T) {
	archive := randomArchive(t)
	result, err := Generate(t.Context(), Source{Scheme: SchemeDockerArchive, Location: archive}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(result.JSON))
	if counted, err := encodedSize(result.SBOM); err != nil || counted != size {
		t.Fatalf("encodedSize = %d, %v; want %d", counted, err, size)
	}
	if encoded, err := encode(result.SBOM, size); err != nil || int64(len(encoded)) != size {
		t.Errorf("an SBOM of exactly its bound: %d bytes, %v", len(encoded), err)
	}
	var tooLarge *TooLargeError
	if _, err := encode(result.SBOM, size-1); !errors.As(err, &tooLarge) || tooLarge.Size != size || tooLarge.Limit != size-1 || tooLarge.What != "SBOM" {
		t.Errorf("an SBOM one byte over its bound: %v, want a TooLargeError of %d bytes", err, size)
	}
}

func TestAPinnedReferenceNamesTheRepositoryAndDigest(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct{ image, want string }{
		{"registry.example/shop/api:1.4", "registry.example/shop/api@" + digest},
		{"registry.example:5000/shop/api@sha256:" + strings.Repeat("cd", 32), "registry.example:5000/shop/api@" + digest},
		{"alpine", "index.docker.io/library/alpine@" + digest},
	}
	for _, tc := range tests {
		if got, err := PinnedReference(tc.image, digest); err != nil || got != tc.want {
			t.Errorf("PinnedReference(%s) = %q, %v; want %q", tc.image, got, err, tc.want)
		}
	}
	if _, err := PinnedReference("Shop/API", digest); err == nil {
		t.Error("an invalid reference was pinned")
	}
}

func TestTheLicenseScannerIsDroppedOnceIdle(t *testing.T) {
	defer func(idle time.Duration) { licenseScannerIdle = idle }(licenseScannerIdle)
	licenseScannerIdle = 50 * time.Millisecond
	_, release, err := acquireLicenseScanner()
	if err != nil {
		t.Fatal(err)
	}
	_, releaseSecond, err := acquireLicenseScanner()
	if err != nil {
		t.Fatal(err)
	}
	release()
	release() // a release is counted once
	held := func() bool {
		licenseScanner.mu.Lock()
		defer licenseScanner.mu.Unlock()
		return licenseScanner.ctx != nil
	}
	time.Sleep(200 * time.Millisecond)
	if !held() {
		t.Fatal("the license scanner was dropped while a scan still held it")
	}
	releaseSecond()
	deadline := time.Now().Add(5 * time.Second)
	for held() {
		if time.Now().After(deadline) {
			t.Fatal("the license scanner was kept after every scan released it and the idle time passed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAScanContextKeepsItsOwnValuesAndAddsTheOthers(t *testing.T) {
	type key string
	ctx := context.WithValue(t.Context(), key("request"), "scan")
	values := context.WithValue(context.WithValue(context.Background(), key("request"), "shadowed"), key("scanner"), "licenses")
	merged := withValuesOf(ctx, values)
	if got := merged.Value(key("request")); got != "scan" {
		t.Errorf("its own value: %v", got)
	}
	if got := merged.Value(key("scanner")); got != "licenses" {
		t.Errorf("the other context's value: %v", got)
	}
	if got := merged.Value(key("missing")); got != nil {
		t.Errorf("a value of neither: %v", got)
	}
}

func TestALimitedImagesLayersAreReadWithinItsBudget(t *testing.T) {
	img := randomImage(t, 4096, 1)
	limited, err := limitImage(img, newBudget(Options{MaxUncompressedSize: 1024}), 0)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	digest, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	diffID, err := layers[0].DiffID()
	if err != nil {
		t.Fatal(err)
	}
	byDigest, err := limited.LayerByDigest(digest)
	if err != nil {
		t.Fatal(err)
	}
	byDiffID, err := limited.LayerByDiffID(diffID)
	if err != nil {
		t.Fatal(err)
	}
	for what, layer := range map[string]v1.Layer{"by digest": byDigest, "by diff ID": byDiffID} {
		content, err := layer.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, content)
		_ = content.Close()
		if !errors.As(err, new(*TooLargeError)) {
			t.Errorf("the layer %s read %v, want a TooLargeError", what, err)
		}
	}
	unknown := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	if _, err := limited.LayerByDigest(unknown); err == nil {
		t.Error("a layer of an unknown digest")
	}
	if _, err := limited.LayerByDiffID(unknown); err == nil {
		t.Error("a layer of an unknown diff ID")
	}
}

// writeLayout writes img as the one image of an OCI layout, and returns its folder.
func writeLayout(t *testing.T, img v1.Image) string {
	t.Helper()
	dir := t.TempDir()
	index, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := index.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return dir
}

// armV7 is img for linux/arm/v7.
func armV7(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	config, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	config.Architecture, config.Variant = "arm", "v7"
	if img, err = mutate.ConfigFile(img, config); err != nil {
		t.Fatal(err)
	}
	return img
}

// expectManifest fails t unless the SBOM's source names img's manifest, as syft's own image
// sources record it.
func expectManifest(t *testing.T, result *Result, img v1.Image) {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	metadata, ok := result.SBOM.Source.Metadata.(syftsource.ImageMetadata)
	if !ok || !bytes.Equal(metadata.RawManifest, raw) {
		t.Errorf("the SBOM's source %T does not carry the image's manifest", result.SBOM.Source.Metadata)
	}
}

func TestARegistryImageOfAnotherVariantIsRefused(t *testing.T) {
	img := armV7(t, randomImage(t, 1024, 1))
	server := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer server.Close()
	host := strings.TrimPrefix(server.URL, "http://")
	ref, err := name.ParseReference(host + "/edge/agent:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	options := Options{Registries: RegistryAccessOf([]string{host}, nil), Timeout: 10 * time.Second}
	source := Source{Scheme: SchemeRegistry, Location: ref.String()}
	options.Platform = "linux/arm/v7"
	if _, err := Generate(t.Context(), source, options); err != nil {
		t.Errorf("its own variant: %v", err)
	}
	options.Platform = "linux/arm/v6"
	var mismatch *image.ErrPlatformMismatch
	if _, err := Generate(t.Context(), source, options); !errors.As(err, &mismatch) {
		t.Errorf("another variant: %v, want a platform mismatch", err)
	}
}

func TestALayoutOfAnotherVariantIsLeftToSyftsReader(t *testing.T) {
	img := armV7(t, randomImage(t, 4096, 1))
	source := Source{Scheme: SchemeOCIDir, Location: writeLayout(t, img)}
	// Vigil's reader, which keeps the bound, reads the layout of its own variant only.
	if _, err := Generate(t.Context(), source, Options{Platform: "linux/arm/v7", MaxUncompressedSize: 1024}); !errors.As(err, new(*TooLargeError)) {
		t.Errorf("its own variant: %v, want a TooLargeError from Vigil's reader", err)
	}
	if _, err := Generate(t.Context(), source, Options{Platform: "linux/arm/v6", MaxUncompressedSize: 1024}); errors.As(err, new(*TooLargeError)) {
		t.Errorf("another variant was read by Vigil's reader: %v", err)
	}
}
