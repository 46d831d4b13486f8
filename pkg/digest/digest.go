// Package digest reads image digests out of image references and container image IDs.
package digest

import "strings"

// FromReference is the sha256 digest that a reference pins ("repo@sha256:...", or a container
// status imageID such as "docker-pullable://repo@sha256:..."), or empty when it pins none. A bare
// "sha256:..." imageID names a local image configuration, not a registry digest, and gives empty.
func FromReference(reference string) string {
	at := strings.LastIndex(reference, "@")
	if at < 0 {
		return ""
	}
	digest := reference[at+1:]
	if !IsSHA256(digest) {
		return ""
	}
	return digest
}

// FromImageID is the registry digest in a container status imageID, or empty.
func FromImageID(imageID string) string {
	return FromReference(imageID)
}

// IsSHA256 tells whether s is "sha256:" and 64 lower-case hex digits.
func IsSHA256(s string) bool {
	hex, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
