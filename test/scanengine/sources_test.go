package scanengine

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
)

// scan generates the SBOM of input with options and matches it.
func scan(t *testing.T, input string, options sbom.Options) (*match.Result, error) {
	t.Helper()
	source, err := sbom.ParseSource(input)
	if err != nil {
		return nil, err
	}
	generated, err := sbom.Generate(context.Background(), source, options)
	if err != nil {
		return nil, err
	}
	return match.NewMatcher(provider, database).Match(context.Background(), generated.JSON)
}

func javaImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := images.JavaLog4j()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// stereoscopeTempDirs lists syft's image folders left in the temporary folder.
func stereoscopeTempDirs(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, entry := range entries {
		if strings.HasPrefix(entry.Name(), "stereoscope-") || strings.HasPrefix(entry.Name(), "syft-") {
			dirs = append(dirs, entry.Name())
		}
	}
	return dirs
}

func TestEverySourceFindsTheSameVulnerabilities(t *testing.T) {
	img := javaImage(t)
	want := "GHSA-jfh8-c2jp-5v3q log4j-core 2.14.1 java-archive 2.15.0\n"
	dir := t.TempDir()

	ociDir := filepath.Join(dir, "layout")
	if err := images.WriteOCILayout(ociDir, img); err != nil {
		t.Fatal(err)
	}
	ociArchive := filepath.Join(dir, "image.oci.tar")
	if err := tarDirectory(ociDir, ociArchive); err != nil {
		t.Fatal(err)
	}
	dockerArchive := filepath.Join(dir, "image.docker.tar")
	if err := tarball.WriteToFile(dockerArchive, name.MustParseReference("shop/api:1.4"), img); err != nil {
		t.Fatal(err)
	}
	reg := registry.Start(registry.Options{})
	defer reg.Close()
	if _, err := reg.Push(img, "shop/api", "1.4"); err != nil {
		t.Fatal(err)
	}
	plainHTTP := sbom.Options{Registries: map[string]sbom.RegistryAccess{reg.Host: {PlainHTTP: true}}}

	before := stereoscopeTempDirs(t)
	for _, tc := range []struct {
		input   string
		options sbom.Options
	}{
		{"oci-dir:" + ociDir, sbom.Options{}},
		{"oci-archive:" + ociArchive, sbom.Options{}},
		{"docker-archive:" + dockerArchive, sbom.Options{}},
		{"registry:" + reg.Host + "/shop/api:1.4", plainHTTP},
		{reg.Host + "/shop/api:1.4", plainHTTP},
	} {
		t.Run(tc.input, func(t *testing.T) {
			result, err := scan(t, tc.input, tc.options)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(result); got != want {
				t.Errorf("findings:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	if after := stereoscopeTempDirs(t); len(after) != len(before) {
		t.Errorf("temporary folders left behind: before %v, after %v", before, after)
	}
}

func TestRegistryAccess(t *testing.T) {
	img := javaImage(t)
	reg := registry.Start(registry.Options{Username: "vigil", Password: "s3cret"})
	defer reg.Close()
	if _, err := reg.Push(img, "private/api", "1"); err != nil {
		t.Fatal(err)
	}
	ref := "registry:" + reg.Host + "/private/api:1"
	plainHTTP := map[string]sbom.RegistryAccess{reg.Host: {PlainHTTP: true}}
	credentials := func(user, password string) []sbom.Credential {
		creds, err := sbom.CredentialsFromDockerConfig(reg.DockerConfig(user, password))
		if err != nil {
			t.Fatal(err)
		}
		return creds
	}

	before := stereoscopeTempDirs(t)
	t.Run("the right credentials from a pull secret", func(t *testing.T) {
		result, err := scan(t, ref, sbom.Options{Registries: plainHTTP, Credentials: credentials("vigil", "s3cret")})
		if err != nil {
			t.Fatal(err)
		}
		if len(result.Findings) != 1 {
			t.Errorf("findings: %s", summary(result))
		}
	})
	t.Run("wrong credentials", func(t *testing.T) {
		_, err := scan(t, ref, sbom.Options{Registries: plainHTTP, Credentials: credentials("vigil", "wrong")})
		if !errors.Is(err, sbom.ErrUnauthorized) {
			t.Errorf("error = %v, want ErrUnauthorized", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		_, err := scan(t, ref, sbom.Options{Registries: plainHTTP})
		if !errors.Is(err, sbom.ErrUnauthorized) {
			t.Errorf("error = %v, want ErrUnauthorized", err)
		}
	})
	if after := stereoscopeTempDirs(t); len(after) != len(before) {
		t.Errorf("temporary folders left behind: before %v, after %v", before, after)
	}
}

func TestPlatformSelection(t *testing.T) {
	node, err := images.NodeMinimist()
	if err != nil {
		t.Fatal(err)
	}
	index, err := images.MultiPlatform(map[string]v1.Image{"linux/amd64": javaImage(t), "linux/arm64": node})
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.Start(registry.Options{})
	defer reg.Close()
	if err := reg.PushIndex(index, "multi/app", "1"); err != nil {
		t.Fatal(err)
	}
	ref := "registry:" + reg.Host + "/multi/app:1"
	for platform, want := range map[string]string{
		"":            "GHSA-jfh8-c2jp-5v3q log4j-core 2.14.1 java-archive 2.15.0\n", // linux/amd64 by default
		"linux/arm64": "GHSA-xvch-5gv4-984h minimist 1.2.5 npm 1.2.6\n",
	} {
		result, err := scan(t, ref, sbom.Options{Platform: platform})
		if err != nil {
			t.Fatalf("platform %q: %v", platform, err)
		}
		if got := summary(result); got != want {
			t.Errorf("platform %q: findings\n%s\nwant\n%s", platform, got, want)
		}
	}
	if _, err := scan(t, ref, sbom.Options{Platform: "linux/s390x"}); err == nil {
		t.Error("a platform the image does not have was scanned")
	}
}

func TestRemovedPackageIsNotReported(t *testing.T) {
	img, err := images.DebianOpenSSL()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	// The first layer alone installs the openssl package, which the second layer removes.
	base, err := images.Build()
	if err != nil {
		t.Fatal(err)
	}
	firstLayerOnly, err := mutate.AppendLayers(base, layers[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := summary(scanOCILayout(t, firstLayerOnly)); !strings.Contains(got, "CVE-2023-0286 openssl 3.0.7-1") {
		t.Fatalf("the first layer alone does not report openssl:\n%s", got)
	}
	if got := summary(scanOCILayout(t, img)); strings.Contains(got, " openssl ") {
		t.Errorf("the removed openssl package is reported:\n%s", got)
	}
}

func TestSelfSignedRegistryOnlyWhenConfigured(t *testing.T) {
	reg := registry.Start(registry.Options{TLS: true})
	defer reg.Close()
	if _, err := reg.Push(javaImage(t), "tls/api", "1"); err != nil {
		t.Fatal(err)
	}
	ref := "registry:" + reg.Host + "/tls/api:1"
	if _, err := scan(t, ref, sbom.Options{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error = %v, want a certificate verification failure", err)
	}
	result, err := scan(t, ref, sbom.Options{Registries: map[string]sbom.RegistryAccess{reg.Host: {SkipTLSVerify: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(result.Findings) != 1 {
		t.Errorf("findings: %s", summary(result))
	}
}

func TestTooLarge(t *testing.T) {
	img := javaImage(t)
	dir := filepath.Join(t.TempDir(), "layout")
	if err := images.WriteOCILayout(dir, img); err != nil {
		t.Fatal(err)
	}
	reg := registry.Start(registry.Options{})
	defer reg.Close()
	if _, err := reg.Push(img, "big/api", "1"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		input   string
		options sbom.Options
		what    string
	}{
		{"an image above the image bound", "oci-dir:" + dir, sbom.Options{MaxImageSize: 100}, "image"},
		{"a registry image above the image bound, never pulled", "registry:" + reg.Host + "/big/api:1",
			sbom.Options{MaxImageSize: 100, Registries: map[string]sbom.RegistryAccess{reg.Host: {PlainHTTP: true}}}, "image"},
		{"an SBOM above the SBOM bound", "oci-dir:" + dir, sbom.Options{MaxSBOMSize: 1000}, "SBOM"},
		{"an SBOM above the SBOM bound, not kept as JSON", "oci-dir:" + dir, sbom.Options{MaxSBOMSize: 1000, WithoutJSON: true}, "SBOM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scan(t, tc.input, tc.options)
			var tooLarge *sbom.TooLargeError
			if !errors.As(err, &tooLarge) {
				t.Fatalf("error = %v, want a TooLargeError", err)
			}
			if tooLarge.What != tc.what || tooLarge.Size <= tooLarge.Limit {
				t.Errorf("TooLargeError = %+v", tooLarge)
			}
			if !strings.Contains(err.Error(), "above the limit of") || !strings.Contains(err.Error(), "bytes") {
				t.Errorf("message %q does not name the sizes", err)
			}
		})
	}
	// Measuring the registry image read its manifest and no layer.
	if pulls := reg.Pulls("big/api"); pulls > 1 {
		t.Errorf("the too-large image was pulled: %d manifest reads", pulls)
	}
}

// tarDirectory writes dir as a tar archive at path, the form of an OCI archive.
func tarDirectory(dir, path string) error {
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	defer out.Close()
	writer := tar.NewWriter(out)
	err = filepath.WalkDir(dir, func(file string, entry fs.DirEntry, err error) error {
		if err != nil || file == dir {
			return err
		}
		info, err := entry.Info()
		if err != nil {
			return err
		}
		header, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		header.Name, _ = filepath.Rel(dir, file)
		if err := writer.WriteHeader(header); err != nil || entry.IsDir() {
			return err
		}
		in, err := os.Open(file)
		if err != nil {
			return err
		}
		defer in.Close()
		_, err = io.Copy(writer, in)
		return err
	})
	if err != nil {
		return err
	}
	return writer.Close()
}
