// Package executor runs image scans for the scan reconciler: in the manager's process, or as a
// Kubernetes Job per image digest. Either way a finished scan leaves its SBOM in the SBOM store
// (or an outcome that says why there is none) and notifies the reconciler.
package executor

import (
	"context"

	"github.com/vigil-dev/vigil/pkg/sbom"
)

// Request is the scan of one image digest.
type Request struct {
	// Digest is the image digest to scan.
	Digest string
	// Images are references pinned to Digest (repository@digest), tried in order until one can be
	// pulled, each with the credentials of the namespace that uses it.
	Images []PinnedImage
}

// PinnedImage is a reference pinned to a digest, with the credentials that pull it.
type PinnedImage struct {
	Reference   string
	Credentials []sbom.Credential
}

// Outcome is how a scan ended. A scan that succeeded stored its SBOM and has a nil Err.
type Outcome struct {
	Digest string
	// Err says why the scan failed; it wraps *sbom.TooLargeError or sbom.ErrUnauthorized when
	// those are the reasons.
	Err error
}

// Executor runs scans. Implementations are safe for concurrent use.
type Executor interface {
	// Submit starts the scan of req.Digest unless one is running, without waiting for it.
	Submit(ctx context.Context, req Request) error
	// Running tells whether a scan of digest is running or waiting to run.
	Running(ctx context.Context, digest string) bool
	// TakeOutcome returns the outcome of the last finished scan of digest and forgets it.
	TakeOutcome(ctx context.Context, digest string) (Outcome, bool)
}
