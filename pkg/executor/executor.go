// Package executor runs image scans for the scan reconciler: in the manager's process, or as a
// Kubernetes Job per scan attempt. Either way a finished attempt leaves its SBOM in the SBOM store
// of the replica that reconciles, and its outcome is persisted through an OutcomeRecorder (on the
// ImageScan's status) before anything else happens: no stage reads another stage's memory, and a
// replica that dies loses at most the attempt it was running.
package executor

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-dev/vigil/pkg/sbom"
)

// Request is one attempt at scanning an image digest.
type Request struct {
	// Digest is the image digest to scan.
	Digest string
	// ScanUID is the UID of the ImageScan that asks for the attempt.
	ScanUID types.UID
	// Attempt numbers the attempt; an outcome names the attempt it belongs to, and an outcome of
	// an attempt that is not the current one is ignored.
	Attempt int32
	// Images are references pinned to Digest (repository@digest), tried in order until one can be
	// pulled, each with the credentials of the namespace that uses it and only those.
	Images []PinnedImage
}

// PinnedImage is a reference pinned to a digest, with the credentials that pull it.
type PinnedImage struct {
	Reference   string
	Credentials []sbom.Credential
}

// Outcome is how a scan attempt ended. An attempt that succeeded stored its SBOM and has a nil
// Err.
type Outcome struct {
	Digest  string
	Attempt int32
	// ImageSize is the image's compressed size in bytes, when known.
	ImageSize int64
	// Err says why the attempt failed; it wraps *sbom.TooLargeError, sbom.ErrUnauthorized or
	// *OOMKilledError when those are the reasons.
	Err error
}

// OutcomeRecorder persists the outcome of a scan attempt where every replica sees it. It
// returns an error when the outcome could not be persisted; the executor then retries.
// It returns ErrStaleAttempt for an outcome of an attempt that is not the current one.
type OutcomeRecorder interface {
	RecordOutcome(ctx context.Context, outcome Outcome) error
}

// ErrStaleAttempt says that an outcome belongs to an attempt that is no longer current (the
// image was scanned, or another attempt started).
var ErrStaleAttempt = fmt.Errorf("the scan attempt is not the current one")

// State is what an executor knows of one attempt.
type State int

// The states of an attempt.
const (
	// Lost: the executor does not run the attempt and knows nothing of its end (its replica
	// died, or its Job is gone).
	Lost State = iota
	// Running: the attempt runs or waits to run.
	Running
	// Ended: the attempt ended; its outcome was, or is being, recorded.
	Ended
)

// Executor runs scan attempts. Implementations are safe for concurrent use.
type Executor interface {
	// Submit starts the attempt req without waiting for it.
	Submit(ctx context.Context, req Request) error
	// Check tells the state of an attempt. An attempt that ended without reporting (a scan Job
	// killed for its memory, past its deadline) is recorded as failed through the
	// OutcomeRecorder by Check itself.
	Check(ctx context.Context, digest string, scanUID types.UID, attempt int32) (State, error)
}

// OOMKilledError says that a scan was killed for using more memory than its limit: the image is
// too large for the scanner's memory.
type OOMKilledError struct {
	Limit string
}

func (e *OOMKilledError) Error() string {
	return fmt.Sprintf("the scan Job was killed for using more than its memory limit of %s; raise resources.scanner.limits.memory", e.Limit)
}
