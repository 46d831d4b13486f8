package sbom

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Scheme is where an image is read from.
type Scheme string

// The schemes Vigil reads images from.
const (
	// SchemeRegistry reads an image from a registry by reference.
	SchemeRegistry Scheme = "registry"
	// SchemeOCIDir reads an OCI image layout directory.
	SchemeOCIDir Scheme = "oci-dir"
	// SchemeOCIArchive reads an OCI image layout tar archive.
	SchemeOCIArchive Scheme = "oci-archive"
	// SchemeDockerArchive reads a tar archive written by `docker save`.
	SchemeDockerArchive Scheme = "docker-archive"
)

// Source is an image to scan.
type Source struct {
	Scheme Scheme
	// Location is the image reference for a registry and a path otherwise.
	Location string
}

// String is the source as ParseSource reads it.
func (s Source) String() string {
	return string(s.Scheme) + ":" + s.Location
}

// ParseSource reads SCHEME:LOCATION (registry:REF, oci-dir:PATH, oci-archive:PATH,
// docker-archive:PATH) or a bare image reference, which means a registry. A registry reference
// is checked for syntax; a path must exist.
func ParseSource(input string) (Source, error) {
	input = strings.TrimSpace(input)
	if input == "" {
		return Source{}, errors.New("no image given")
	}
	source := Source{Scheme: SchemeRegistry, Location: input}
	for _, scheme := range []Scheme{SchemeRegistry, SchemeOCIDir, SchemeOCIArchive, SchemeDockerArchive} {
		if rest, ok := strings.CutPrefix(input, string(scheme)+":"); ok {
			source = Source{Scheme: scheme, Location: rest}
			break
		}
	}
	if source.Location == "" {
		return Source{}, fmt.Errorf("%q names no image after %q", input, source.Scheme+":")
	}
	if source.Scheme == SchemeRegistry {
		if _, err := name.ParseReference(source.Location, name.StrictValidation); err != nil {
			if _, err := name.ParseReference(source.Location); err != nil {
				return Source{}, fmt.Errorf("%q is not a valid image reference: %w", source.Location, err)
			}
		}
		return source, nil
	}
	info, err := os.Stat(source.Location)
	if err != nil {
		return Source{}, fmt.Errorf("reading %s: %w", source, err)
	}
	if wantDir := source.Scheme == SchemeOCIDir; info.IsDir() != wantDir {
		if wantDir {
			return Source{}, fmt.Errorf("%s: %s is not a directory", source, source.Location)
		}
		return Source{}, fmt.Errorf("%s: %s is a directory, not an archive", source, source.Location)
	}
	return source, nil
}
