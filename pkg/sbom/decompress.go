package sbom

import (
	"bufio"
	"errors"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
)

// gzipMagic starts every gzip stream.
var gzipMagic = [2]byte{0x1f, 0x8b}

// uncompressed reads layer decompressed. A gzip layer, nearly every layer there is, is inflated
// with klauspost/compress, about twice as fast as the standard library's gzip that
// go-containerregistry uses, and decompression is the largest single cost of a scan. The bytes
// read are the layer's compressed stream as go-containerregistry serves it (a registry layer's
// digest is checked as it is read); any other layer (zstd, uncompressed) is read by
// go-containerregistry itself.
func uncompressed(layer v1.Layer) (io.ReadCloser, error) {
	compressed, err := layer.Compressed()
	if err != nil {
		return nil, err
	}
	buffered := bufio.NewReaderSize(compressed, 1<<16)
	magic, err := buffered.Peek(len(gzipMagic))
	if err != nil || magic[0] != gzipMagic[0] || magic[1] != gzipMagic[1] {
		// not gzip, or too short to tell: go-containerregistry knows every other form
		_ = compressed.Close()
		return layer.Uncompressed()
	}
	inflated, err := gzip.NewReader(buffered)
	if err != nil {
		_ = compressed.Close()
		return nil, err
	}
	return &gzipLayerReader{inflated: inflated, compressed: compressed}, nil
}

// gzipLayerReader is a layer's inflated content; closing it closes the compressed stream.
type gzipLayerReader struct {
	inflated   *gzip.Reader
	compressed io.Closer
}

func (r *gzipLayerReader) Read(p []byte) (int, error) {
	return r.inflated.Read(p)
}

func (r *gzipLayerReader) Close() error {
	return errors.Join(r.inflated.Close(), r.compressed.Close())
}
