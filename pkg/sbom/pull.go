package sbom

import (
	"context"
	"errors"
	"fmt"

	"github.com/anchore/stereoscope/pkg/file"
	"github.com/anchore/stereoscope/pkg/image"
	syftsource "github.com/anchore/syft/syft/source"
	"github.com/anchore/syft/syft/source/stereoscopesource"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// openRegistrySource reads a registry image the way syft's registry source does (stereoscope
// indexes its layers), but through Vigil's own transport: the registry policy's dialler on
// every connection, certificate checks per registry, and the image's layers read within the
// bounds of options, so that a decompression bomb or a layer of millions of files ends with a
// *TooLargeError instead of filling the disk or the memory.
func openRegistrySource(ctx context.Context, source Source, options Options, platform *image.Platform) (syftsource.Source, error) {
	ref, err := parseReference(source.Location, options)
	if err != nil {
		return nil, err
	}
	if err := options.Policy.CheckRegistry(ref.Context().RegistryStr()); err != nil {
		return nil, err
	}
	wanted := &v1.Platform{OS: platform.OS, Architecture: platform.Architecture, Variant: platform.Variant}
	descriptor, err := remote.Get(ref, remote.WithContext(ctx), remote.WithPlatform(*wanted), remote.WithUserAgent("vigil"),
		remote.WithAuthFromKeychain(keychain(options.Credentials)), remote.WithTransport(transportFor(ref, options)))
	if err != nil {
		return nil, classify(fmt.Errorf("reading %s: %w", source, err))
	}
	img, err := descriptor.Image()
	if err != nil {
		return nil, classify(fmt.Errorf("reading %s: %w", source, err))
	}
	config, err := img.ConfigFile()
	if err != nil {
		return nil, classify(fmt.Errorf("reading the configuration of %s: %w", source, err))
	}
	if config.OS != wanted.OS || config.Architecture != wanted.Architecture || (wanted.Variant != "" && config.Variant != wanted.Variant) {
		return nil, &image.ErrPlatformMismatch{
			ExpectedPlatform: platform.String(),
			Err:              fmt.Errorf("%s is an image for %s", source, config.Platform()),
		}
	}
	metadata := []image.AdditionalMetadata{
		image.WithRepoDigests(fmt.Sprintf("%s/%s@%s", ref.Context().RegistryStr(), ref.Context().RepositoryStr(), descriptor.Digest)),
		image.WithArchitecture(platform.Architecture, platform.Variant),
		image.WithOS(platform.OS),
	}
	if manifest, err := img.RawManifest(); err == nil {
		metadata = append(metadata, image.WithManifest(manifest))
	}
	return readImage(ctx, img, source, options, platform, "oci-registry-image", metadata)
}

// openLayoutSource reads an OCI layout directory that holds one image through the same reader
// as a registry image (the bounds of options, the faster decompression, the lower layers'
// squashes built only when read). It reports false, and reads nothing, for any other layout
// (a multi-platform index, attestations beside the image, an image of another platform, a
// folder that is no layout): syft's own OCI directory source reads those, and reports their
// errors, as before.
func openLayoutSource(ctx context.Context, source Source, options Options, platform *image.Platform) (syftsource.Source, bool, error) {
	index, err := layout.ImageIndexFromPath(source.Location)
	if err != nil {
		return nil, false, nil
	}
	manifest, err := index.IndexManifest()
	if err != nil || len(manifest.Manifests) != 1 || !manifest.Manifests[0].MediaType.IsImage() {
		return nil, false, nil
	}
	img, err := index.Image(manifest.Manifests[0].Digest)
	if err != nil {
		return nil, false, nil
	}
	config, err := img.ConfigFile()
	if err != nil || config.OS != platform.OS || config.Architecture != platform.Architecture ||
		(platform.Variant != "" && config.Variant != platform.Variant) {
		return nil, false, nil
	}
	metadata := []image.AdditionalMetadata{image.WithManifestDigest(manifest.Manifests[0].Digest.String())}
	if raw, err := img.RawManifest(); err == nil {
		metadata = append(metadata, image.WithManifest(raw))
	}
	src, err := readImage(ctx, img, source, options, platform, "oci-dir-image", metadata)
	return src, true, err
}

// readImage indexes img's layers with stereoscope, within the bounds of options, as syft's
// image sources do.
func readImage(ctx context.Context, img v1.Image, source Source, options Options, platform *image.Platform,
	folder string, metadata []image.AdditionalMetadata) (syftsource.Source, error) {
	limits := newBudget(options)
	limited, err := limitImage(img, limits, options.MaxLayers)
	if err != nil {
		return nil, classify(fmt.Errorf("reading the layers of %s: %w", source, err))
	}
	tempDirs := file.NewTempDirGenerator("vigil")
	dir, err := tempDirs.NewDirectory(folder)
	if err != nil {
		return nil, fmt.Errorf("creating the scratch folder of %s: %w", source, err)
	}
	indexed := image.New(limited, tempDirs, dir, metadata...)
	// lower layer squashes are built only when something reads them, as syft's own source does
	if err := indexed.Read(image.WithLazyLayerSquashes(ctx)); err != nil {
		cleanupErr := indexed.Cleanup()
		if tooLarge := limits.err(); tooLarge != nil {
			return nil, errors.Join(tooLarge, cleanupErr)
		}
		return nil, errors.Join(classify(fmt.Errorf("reading the layers of %s: %w", source, err)), cleanupErr)
	}
	return stereoscopesource.New(indexed, stereoscopesource.ImageConfig{
		Reference: source.Location, Platform: platform,
	}), nil
}
