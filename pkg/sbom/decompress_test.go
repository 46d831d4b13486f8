package sbom

import (
	"bytes"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TestUncompressedReadsWhatTheLayerHolds checks that a layer read with the faster gzip, or
// handed back to go-containerregistry when it is not gzip, gives the layer's own tar.
func TestUncompressedReadsWhatTheLayerHolds(t *testing.T) {
	gzipped, err := random.Layer(4096, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		layer v1.Layer
	}{
		{"gzip", gzipped},
		{"uncompressed", static.NewLayer([]byte("not a gzip stream, read as it is"), types.OCIUncompressedLayer)},
		{"shorter than the gzip magic", static.NewLayer([]byte("x"), types.OCIUncompressedLayer)},
		{"empty", static.NewLayer(nil, types.OCIUncompressedLayer)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := readAll(t, tt.layer.Uncompressed)
			got := readAll(t, func() (io.ReadCloser, error) { return uncompressed(tt.layer) })
			if !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, want the layer's %d", len(got), len(want))
			}
		})
	}
}

// TestUncompressedFailsOnACorruptStream checks that a gzip layer cut short is an error, not a
// shorter tar.
func TestUncompressedFailsOnACorruptStream(t *testing.T) {
	gzipped, err := random.Layer(4096, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	compressed := readAll(t, gzipped.Compressed)
	truncated := static.NewLayer(compressed[:len(compressed)/2], types.OCILayer)
	reader, err := uncompressed(truncated)
	if err != nil {
		return // refused at once: fine
	}
	defer reader.Close()
	if _, err := io.ReadAll(reader); err == nil {
		t.Fatal("a truncated gzip layer read without an error")
	}
}

func readAll(t *testing.T, open func() (io.ReadCloser, error)) []byte {
	t.Helper()
	reader, err := open()
	if err != nil {
		t.Fatal(err)
	}
	content, err := io.ReadAll(reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.Close(); err != nil {
		t.Fatal(err)
	}
	return content
}
