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
	limits := newBudget(options)
	limited, err := limitImage(img, limits, options.MaxLayers)
	if err != nil {
		return nil, classify(fmt.Errorf("reading the layers of %s: %w", source, err))
	}

	metadata := []image.AdditionalMetadata{
		image.WithRepoDigests(fmt.Sprintf("%s/%s@%s", ref.Context().RegistryStr(), ref.Context().RepositoryStr(), descriptor.Digest)),
		image.WithArchitecture(platform.Architecture, platform.Variant),
		image.WithOS(platform.OS),
	}
	if manifest, err := img.RawManifest(); err == nil {
		metadata = append(metadata, image.WithManifest(manifest))
	}
	tempDirs := file.NewTempDirGenerator("vigil")
	dir, err := tempDirs.NewDirectory("oci-registry-image")
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
		Reference: source.Location, Platform: platform, RegistryOptions: registryOptions(source, options),
	}), nil
}
