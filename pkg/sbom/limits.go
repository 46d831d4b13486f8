package sbom

import (
	"archive/tar"
	"errors"
	"io"
	"strconv"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// budget counts what a scan reads of an image's layers, decompressed, against the bounds of
// Options: bytes of all layers together and tar entries of all layers together. The first
// bound passed is kept, so that the scan ends with it whatever error the reader of the layers
// wraps it in.
type budget struct {
	maxBytes int64
	maxFiles int64

	mu       sync.Mutex
	bytes    int64
	files    int64
	exceeded *TooLargeError
}

func newBudget(options Options) *budget {
	return &budget{maxBytes: options.MaxUncompressedSize, maxFiles: options.MaxFiles}
}

// err is the bound passed, or nil.
func (b *budget) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.exceeded == nil {
		return nil
	}
	return b.exceeded
}

func (b *budget) addBytes(n int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bytes += int64(n)
	if b.exceeded == nil && b.maxBytes > 0 && b.bytes > b.maxBytes {
		b.exceeded = &TooLargeError{What: "decompressed image", Size: b.bytes, Limit: b.maxBytes, AtLeast: true}
	}
	if b.exceeded != nil {
		return b.exceeded
	}
	return nil
}

func (b *budget) addFile() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files++
	if b.exceeded == nil && b.maxFiles > 0 && b.files > b.maxFiles {
		b.exceeded = &TooLargeError{What: "image", Size: b.files, Limit: b.maxFiles, Unit: "files", AtLeast: true}
	}
	if b.exceeded != nil {
		return b.exceeded
	}
	return nil
}

// limitImage wraps img so that its layers are read within b, and fails when it has more than
// maxLayers layers (0: no bound).
func limitImage(img v1.Image, b *budget, maxLayers int) (v1.Image, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if maxLayers > 0 && len(layers) > maxLayers {
		return nil, &TooLargeError{What: "image", Size: int64(len(layers)), Limit: int64(maxLayers), Unit: "layers"}
	}
	return &limitedImage{Image: img, budget: b}, nil
}

// limitedImage is an image whose layers are read within a budget.
type limitedImage struct {
	v1.Image
	budget *budget
}

// Layers are the image's layers, each read within the budget.
func (i *limitedImage) Layers() ([]v1.Layer, error) {
	layers, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	limited := make([]v1.Layer, len(layers))
	for n, layer := range layers {
		limited[n] = &limitedLayer{Layer: layer, budget: i.budget}
	}
	return limited, nil
}

// LayerByDigest is the layer of a digest, read within the budget.
func (i *limitedImage) LayerByDigest(digest v1.Hash) (v1.Layer, error) {
	layer, err := i.Image.LayerByDigest(digest)
	if err != nil {
		return nil, err
	}
	return &limitedLayer{Layer: layer, budget: i.budget}, nil
}

// LayerByDiffID is the layer of a diff ID, read within the budget.
func (i *limitedImage) LayerByDiffID(diffID v1.Hash) (v1.Layer, error) {
	layer, err := i.Image.LayerByDiffID(diffID)
	if err != nil {
		return nil, err
	}
	return &limitedLayer{Layer: layer, budget: i.budget}, nil
}

// limitedLayer is a layer whose decompressed content is read within a budget.
type limitedLayer struct {
	v1.Layer
	budget *budget
}

// Uncompressed is the layer's tar, which fails with a *TooLargeError as soon as the image's
// decompressed bytes or tar entries pass their bound.
func (l *limitedLayer) Uncompressed() (io.ReadCloser, error) {
	content, err := uncompressed(l.Layer)
	if err != nil {
		return nil, err
	}
	if l.budget.maxBytes <= 0 && l.budget.maxFiles <= 0 {
		return content, nil
	}
	return newCountingReader(content, l.budget), nil
}

// countingReader passes a layer's tar through and counts its bytes and, with a tar reader fed
// the same bytes in step, its entries; it fails as soon as the budget is passed.
type countingReader struct {
	content io.ReadCloser
	budget  *budget
	entries *io.PipeWriter
	done    chan struct{}
	closed  bool
}

func newCountingReader(content io.ReadCloser, b *budget) *countingReader {
	r := &countingReader{content: content, budget: b, done: make(chan struct{})}
	if b.maxFiles <= 0 {
		close(r.done)
		return r
	}
	pipeReader, pipeWriter := io.Pipe()
	r.entries = pipeWriter
	go func() {
		defer close(r.done)
		reader := tar.NewReader(pipeReader)
		for {
			if _, err := reader.Next(); err != nil {
				// the end of the tar, or a tar this reader cannot parse (the scanner's own reader
				// reports that): drain the rest so that the layer keeps flowing
				_, _ = io.Copy(io.Discard, pipeReader)
				return
			}
			if err := b.addFile(); err != nil {
				pipeReader.CloseWithError(err)
				return
			}
		}
	}()
	return r
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.content.Read(p)
	if n > 0 {
		if budgetErr := r.budget.addBytes(n); budgetErr != nil {
			return 0, budgetErr
		}
		if r.entries != nil {
			// returns once the tar reader has taken these bytes, so the entries are counted in step
			if _, writeErr := r.entries.Write(p[:n]); writeErr != nil {
				return 0, r.failure(writeErr)
			}
		}
	}
	if errors.Is(err, io.EOF) && r.entries != nil {
		_ = r.entries.Close()
		<-r.done
		if budgetErr := r.budget.err(); budgetErr != nil {
			return 0, budgetErr
		}
	}
	return n, err
}

// failure is the error of a write to the entry counter: the budget's, when it was passed.
func (r *countingReader) failure(err error) error {
	if budgetErr := r.budget.err(); budgetErr != nil {
		return budgetErr
	}
	return err
}

// Close closes the layer and stops the entry counter.
func (r *countingReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.content.Close()
	if r.entries != nil {
		_ = r.entries.CloseWithError(io.ErrClosedPipe)
	}
	<-r.done
	return err
}

// Default bounds of a scan, sized for a scanner with 1 GiB of memory and a 10 GiB scratch
// volume: the compressed image, its layers decompressed together, its layers, and its files
// (each file costs a scan about 3.1 KB of memory: 200,000 files peak at about 850 MB).
const (
	DefaultMaxImageSize        int64 = 2 << 30
	DefaultMaxUncompressedSize int64 = 8 << 30
	DefaultMaxLayers                 = 256
	DefaultMaxFiles            int64 = 200_000
)

// JobArgs are the scan-job command's flags for the bounds and the registry policy of options
// that the command does not otherwise take (--max-image-size and --max-sbom-size apart).
func (o Options) JobArgs() []string {
	args := []string{
		"--max-uncompressed-image-size=" + strconv.FormatInt(o.MaxUncompressedSize, 10),
		"--max-image-layers=" + strconv.Itoa(o.MaxLayers),
		"--max-image-files=" + strconv.FormatInt(o.MaxFiles, 10),
	}
	if o.NoCloudCredentials {
		args = append(args, "--no-cloud-credentials")
	}
	return append(args, o.Policy.Args()...)
}
