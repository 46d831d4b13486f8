// Package sbom generates the software bill of materials of an image with syft, from a registry
// (with pull credentials) or from an OCI layout directory, an OCI archive or a docker archive,
// within configured bounds of image and SBOM size.
package sbom

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/anchore/stereoscope/pkg/image"
	"github.com/anchore/syft/syft"
	"github.com/anchore/syft/syft/format/syftjson"
	syftsbom "github.com/anchore/syft/syft/sbom"
	syftsource "github.com/anchore/syft/syft/source"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	// syft reads newer RPM databases with SQL; this registers the same driver grype's CLI does.
	_ "github.com/glebarez/sqlite"
)

// DefaultPlatform is the platform scanned when none is configured.
const DefaultPlatform = "linux/amd64"

// Options configure SBOM generation.
type Options struct {
	// Platform is the os/arch[/variant] of a multi-platform image to scan; empty means linux/amd64.
	Platform string
	// Credentials are the registry credentials to pull with; anonymous when none fits.
	Credentials []Credential
	// Registries configure registries that are reached over plain HTTP or with a certificate
	// that is not verified, by host[:port]. Every other registry is reached over verified HTTPS.
	Registries map[string]RegistryAccess
	// MaxImageSize bounds the image's compressed size in bytes; 0 means no bound.
	MaxImageSize int64
	// MaxSBOMSize bounds the SBOM's size in bytes, as syft JSON; 0 means no bound.
	MaxSBOMSize int64
	// MaxUncompressedSize bounds the image's layers once decompressed, together, in bytes; 0
	// means no bound. It is counted as the layers are read, so that a decompression bomb stops
	// at the bound instead of filling the disk.
	MaxUncompressedSize int64
	// MaxLayers bounds the image's layers; 0 means no bound.
	MaxLayers int
	// MaxFiles bounds the entries (files, directories, links) of all layers together; 0 means
	// no bound. Each entry costs memory in the scanner's file index.
	MaxFiles int64
	// Policy says which registries and addresses may be contacted.
	Policy RegistryPolicy
	// Timeout bounds each registry request; 0 means 30 seconds.
	Timeout time.Duration
	// NoCloudCredentials turns off the cloud's ambient identity (ECR, GCR/Artifact Registry,
	// ACR) that is tried when no credential fits a registry.
	NoCloudCredentials bool
	// FullSBOM catalogs what vulnerability matching never reads as well (file metadata and
	// digests, executables, package-to-file relationships), for an SBOM exported whole. Without
	// it the SBOM holds what matching reads, and the scan is faster and leaner.
	FullSBOM bool
	// WithoutJSON leaves Result.JSON empty, for a caller that matches syft's document as it is
	// (MaxSBOMSize still bounds the document, counted as syft JSON without keeping it).
	WithoutJSON bool
}

// RegistryAccess says how to reach one registry that is not served over verified HTTPS.
type RegistryAccess struct {
	// PlainHTTP reaches the registry over HTTP.
	PlainHTTP bool
	// SkipTLSVerify accepts any certificate from the registry.
	SkipTLSVerify bool
}

// RegistryAccessOf is the access map of the registries reached over plain HTTP and of those whose
// certificate is not verified.
func RegistryAccessOf(plainHTTP, skipTLSVerify []string) map[string]RegistryAccess {
	registries := map[string]RegistryAccess{}
	for _, host := range plainHTTP {
		access := registries[host]
		access.PlainHTTP = true
		registries[host] = access
	}
	for _, host := range skipTLSVerify {
		access := registries[host]
		access.SkipTLSVerify = true
		registries[host] = access
	}
	return registries
}

// Result is a generated SBOM.
type Result struct {
	// SBOM is syft's document.
	SBOM *syftsbom.SBOM
	// ImageSize is the image's compressed size in bytes.
	ImageSize int64
	// JSON is the SBOM as syft JSON, the form Vigil stores and matches; empty with
	// Options.WithoutJSON.
	JSON []byte
}

// Distro is the image's distribution and version, for example "debian 12", or empty.
func (r *Result) Distro() string {
	release := r.SBOM.Artifacts.LinuxDistribution
	if release == nil {
		return ""
	}
	version := release.VersionID
	if version == "" {
		version = release.Version
	}
	if version == "" {
		return release.ID
	}
	return release.ID + " " + version
}

// Packages is the number of packages in the SBOM.
func (r *Result) Packages() int {
	return r.SBOM.Artifacts.Packages.PackageCount()
}

// TooLargeError says that the image or its SBOM exceeds its configured bound.
type TooLargeError struct {
	// What is "image", "decompressed image", "SBOM", or, with a Unit, what is counted.
	What  string
	Size  int64
	Limit int64
	// Unit names what Size and Limit count ("files", "layers"); empty means bytes.
	Unit string
	// AtLeast tells that counting stopped at Size, past the limit: the whole is larger.
	AtLeast bool
}

func (e *TooLargeError) Error() string {
	if e.Size == 0 && e.Limit == 0 {
		// a bound a scan Job reported: its own report says which and by how much
		return fmt.Sprintf("the %s is too large", e.What)
	}
	more := ""
	if e.AtLeast {
		more = "at least "
	}
	if e.Unit != "" {
		return fmt.Sprintf("the %s has %s%d %s, above the limit of %d", e.What, more, e.Size, e.Unit, e.Limit)
	}
	if e.AtLeast {
		return fmt.Sprintf("the %s is larger than the limit of %s", e.What, humanBytes(e.Limit))
	}
	return fmt.Sprintf("the %s is %s, above the limit of %s", e.What, humanBytes(e.Size), humanBytes(e.Limit))
}

// ErrUnauthorized means the registry refused the credentials, or asked for some.
var ErrUnauthorized = errors.New("the registry refused access")

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}

// Generate builds the SBOM of source. A registry image is measured before it is pulled, so
// an image above MaxImageSize is never downloaded. syft's temporary files are removed before
// Generate returns, whatever the outcome.
func Generate(ctx context.Context, source Source, options Options) (*Result, error) {
	platform := options.Platform
	if platform == "" {
		platform = DefaultPlatform
	}
	parsedPlatform, err := image.NewPlatform(platform)
	if err != nil {
		return nil, fmt.Errorf("platform %q: %w", platform, err)
	}
	imageSize, err := measure(ctx, source, options, platform)
	if err != nil {
		return nil, err
	}
	if options.MaxImageSize > 0 && imageSize > options.MaxImageSize {
		return nil, &TooLargeError{What: "image", Size: imageSize, Limit: options.MaxImageSize}
	}

	// The license scanner is built (when no scan holds one) while the image is read.
	licenses := make(chan licenseScannerResult, 1)
	go func() {
		licenseContext, release, err := acquireLicenseScanner()
		licenses <- licenseScannerResult{licenseContext, release, err}
	}()
	src, err := openSource(ctx, source, options, parsedPlatform)
	scanner := <-licenses
	if scanner.err == nil {
		defer scanner.release()
	}
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if scanner.err != nil {
		return nil, scanner.err
	}
	document, err := syft.CreateSBOM(withValuesOf(ctx, scanner.ctx), src, catalogConfig(options.FullSBOM))
	if err != nil {
		return nil, fmt.Errorf("cataloging %s: %w", source, err)
	}
	if options.WithoutJSON {
		if err := boundSize(document, options.MaxSBOMSize); err != nil {
			return nil, err
		}
		return &Result{SBOM: document, ImageSize: imageSize}, nil
	}
	encoded, err := encode(document, options.MaxSBOMSize)
	if err != nil {
		return nil, err
	}
	return &Result{SBOM: document, ImageSize: imageSize, JSON: encoded}, nil
}

// openSource reads a registry image through Vigil's own transport and within the bounds of
// options (openRegistrySource), an OCI layout of one image through the same reader
// (openLayoutSource), and any other local image with syft's sources.
func openSource(ctx context.Context, source Source, options Options, platform *image.Platform) (syftsource.Source, error) {
	if source.Scheme == SchemeRegistry {
		return openRegistrySource(ctx, source, options, platform)
	}
	if source.Scheme == SchemeOCIDir {
		if src, ok, err := openLayoutSource(ctx, source, options, platform); ok {
			return src, err
		}
	}
	// Only the local scheme's own source: nothing here reaches a registry.
	config := syft.DefaultGetSourceConfig().
		WithSources(string(source.Scheme)).
		WithPlatform(platform)
	src, err := syft.GetSource(ctx, source.Location, config)
	if err != nil {
		return nil, classify(fmt.Errorf("reading %s: %w", source, err))
	}
	return src, nil
}

// licenseScannerIdle is how long syft's license scanner is kept after the last scan ends (a
// variable for the tests).
var licenseScannerIdle = 15 * time.Second

// licenseScanner holds a context that carries syft's license scanner, shared by the scans that
// run at once and by those that follow within licenseScannerIdle: building it costs about 300 MB
// of allocations and half a second, which every scan would pay again otherwise, and keeping it
// costs about 200 MB, which an idle manager should not hold.
var licenseScanner struct {
	mu    sync.Mutex
	ctx   context.Context //nolint:containedctx // syft hands its license scanner over only in a context
	users int
	idle  *time.Timer
}

// licenseScannerResult is what acquireLicenseScanner returns.
type licenseScannerResult struct {
	ctx     context.Context //nolint:containedctx // handed from one goroutine to another
	release func()
	err     error
}

// acquireLicenseScanner returns the context that carries the license scanner and the function
// that releases it.
func acquireLicenseScanner() (context.Context, func(), error) {
	licenseScanner.mu.Lock()
	defer licenseScanner.mu.Unlock()
	if licenseScanner.idle != nil {
		licenseScanner.idle.Stop()
		licenseScanner.idle = nil
	}
	if licenseScanner.ctx == nil {
		ctx, err := syft.SetContextLicenseScanner(context.Background(), catalogConfig(false).Licenses)
		if err != nil {
			return nil, nil, fmt.Errorf("building syft's license scanner: %w", err)
		}
		licenseScanner.ctx = ctx
	}
	licenseScanner.users++
	var once sync.Once
	return licenseScanner.ctx, func() { once.Do(releaseLicenseScanner) }, nil
}

func releaseLicenseScanner() {
	licenseScanner.mu.Lock()
	defer licenseScanner.mu.Unlock()
	licenseScanner.users--
	if licenseScanner.users > 0 {
		return
	}
	licenseScanner.idle = time.AfterFunc(licenseScannerIdle, func() {
		licenseScanner.mu.Lock()
		if licenseScanner.users > 0 || licenseScanner.ctx == nil {
			licenseScanner.mu.Unlock()
			return
		}
		licenseScanner.ctx = nil
		licenseScanner.mu.Unlock()
		debug.FreeOSMemory() // return the scanner's memory to the system now, not in minutes
	})
}

// valuesContext is ctx, whose deadline and cancellation it keeps, with the values of another
// context where ctx has none.
type valuesContext struct {
	context.Context
	values context.Context //nolint:containedctx // read for values only
}

func withValuesOf(ctx, values context.Context) context.Context {
	return valuesContext{Context: ctx, values: values}
}

// Value returns ctx's value for key, or else the other context's.
func (c valuesContext) Value(key any) any {
	if value := c.Context.Value(key); value != nil {
		return value
	}
	return c.values.Value(key)
}

// encode writes document as syft JSON, and fails with a TooLargeError as soon as it grows past
// limit (0: no limit), so that an oversized SBOM is never held in memory whole.
func encode(document *syftsbom.SBOM, limit int64) ([]byte, error) {
	writer := &boundedBuffer{limit: limit}
	err := syftjson.NewFormatEncoder().Encode(writer, *document)
	if writer.exceeded {
		return nil, boundSize(document, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("encoding the SBOM: %w", err)
	}
	return writer.buf.Bytes(), nil
}

// boundSize says, with a TooLargeError, whether document is larger than limit bytes as syft JSON
// (counted without keeping it); 0 means no bound.
func boundSize(document *syftsbom.SBOM, limit int64) error {
	if limit <= 0 {
		return nil
	}
	size, err := encodedSize(document)
	if err != nil {
		return err
	}
	if size > limit {
		return &TooLargeError{What: "SBOM", Size: size, Limit: limit}
	}
	return nil
}

// encodedSize is the size of document as syft JSON, counted without keeping it.
func encodedSize(document *syftsbom.SBOM) (int64, error) {
	counter := &boundedBuffer{countOnly: true}
	if err := syftjson.NewFormatEncoder().Encode(counter, *document); err != nil {
		return 0, fmt.Errorf("encoding the SBOM: %w", err)
	}
	return counter.n, nil
}

// errSBOMTooLarge stops the encoder once the SBOM passes its limit.
var errSBOMTooLarge = errors.New("SBOM above its limit")

// boundedBuffer keeps what is written up to limit bytes, or only counts it.
type boundedBuffer struct {
	buf       bytes.Buffer
	n         int64
	limit     int64
	countOnly bool
	exceeded  bool
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if w.countOnly {
		return len(p), nil
	}
	if w.limit > 0 && w.n > w.limit {
		w.exceeded = true
		return 0, errSBOMTooLarge
	}
	return w.buf.Write(p)
}

// measure is the compressed size of the image: its layers and config for a registry, the
// archive for an archive, and the blobs for an OCI layout directory.
func measure(ctx context.Context, source Source, options Options, platform string) (int64, error) {
	switch source.Scheme {
	case SchemeRegistry:
		return measureRemote(ctx, source, options, platform)
	case SchemeOCIDir:
		var total int64
		err := filepath.WalkDir(filepath.Join(source.Location, "blobs"), func(_ string, entry fs.DirEntry, err error) error {
			if err != nil || entry.IsDir() {
				return err
			}
			info, err := entry.Info()
			if err == nil {
				total += info.Size()
			}
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", source, err)
		}
		return total, nil
	default:
		info, err := os.Stat(source.Location)
		if err != nil {
			return 0, fmt.Errorf("reading %s: %w", source, err)
		}
		return info.Size(), nil
	}
}

func measureRemote(ctx context.Context, source Source, options Options, platform string) (int64, error) {
	ref, err := parseReference(source.Location, options)
	if err != nil {
		return 0, err
	}
	if err := options.Policy.CheckRegistry(ref.Context().RegistryStr()); err != nil {
		return 0, err
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		return 0, fmt.Errorf("platform %q: %w", platform, err)
	}
	timeout := options.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithPlatform(*p),
		remote.WithAuthFromKeychain(keychainFor(options)), remote.WithTransport(transportFor(ref, options)))
	if err != nil {
		return 0, classify(fmt.Errorf("reading %s: %w", source, err))
	}
	manifest, err := img.Manifest()
	if err != nil {
		return 0, classify(fmt.Errorf("reading the manifest of %s: %w", source, err))
	}
	if options.MaxLayers > 0 && len(manifest.Layers) > options.MaxLayers {
		return 0, &TooLargeError{What: "image", Size: int64(len(manifest.Layers)), Limit: int64(options.MaxLayers), Unit: "layers"}
	}
	size := manifest.Config.Size
	for _, layer := range manifest.Layers {
		size += layer.Size
	}
	return size, nil
}

func parseReference(location string, options Options) (name.Reference, error) {
	var nameOptions []name.Option
	if ref, err := name.ParseReference(location); err == nil {
		if access, ok := options.Registries[ref.Context().RegistryStr()]; ok && access.PlainHTTP {
			nameOptions = append(nameOptions, name.Insecure)
		}
	}
	ref, err := name.ParseReference(location, nameOptions...)
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid image reference: %w", location, err)
	}
	return ref, nil
}

// classify marks registry authentication failures with ErrUnauthorized.
func classify(err error) error {
	var transportErr *transport.Error
	if errors.As(err, &transportErr) &&
		(transportErr.StatusCode == http.StatusUnauthorized || transportErr.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return err
}

// Resolve returns the digest that a registry reference names (the digest of the image index
// of a multi-platform image, as a container runtime reports it in a pod's imageID), reading the
// registry's manifest head only.
func Resolve(ctx context.Context, image string, options Options) (string, error) {
	ref, err := parseReference(image, options)
	if err != nil {
		return "", err
	}
	if err := options.Policy.CheckRegistry(ref.Context().RegistryStr()); err != nil {
		return "", err
	}
	timeout := options.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	descriptor, err := remote.Head(ref, remote.WithContext(ctx),
		remote.WithAuthFromKeychain(keychainFor(options)), remote.WithTransport(transportFor(ref, options)))
	if err != nil {
		return "", classify(fmt.Errorf("resolving %s: %w", image, err))
	}
	return descriptor.Digest.String(), nil
}

// PinnedReference is image's repository with digest: the reference that pulls exactly that digest.
func PinnedReference(image, digest string) (string, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return "", fmt.Errorf("%q is not a valid image reference: %w", image, err)
	}
	return ref.Context().Name() + "@" + digest, nil
}
