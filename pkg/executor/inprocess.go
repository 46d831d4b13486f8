package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/sbomstore"
)

// InProcess scans in the manager's process, a bounded number at a time: for the local demo and
// small clusters.
type InProcess struct {
	store   *sbomstore.Store
	options sbom.Options
	timeout time.Duration
	notify  func(digest string)
	slots   chan struct{}

	mu       sync.Mutex
	running  map[string]bool
	outcomes map[string]Outcome
}

// NewInProcess returns an executor that runs at most concurrency scans at once, each within
// timeout, with options (platform, bounds, registry access), stores SBOMs in store and calls
// notify with the digest of each scan that ends.
func NewInProcess(store *sbomstore.Store, options sbom.Options, concurrency int, timeout time.Duration, notify func(string)) *InProcess {
	return &InProcess{
		store: store, options: options, timeout: timeout, notify: notify,
		slots:   make(chan struct{}, concurrency),
		running: map[string]bool{}, outcomes: map[string]Outcome{},
	}
}

// Submit starts the scan of req.Digest in the background unless one is running.
func (e *InProcess) Submit(ctx context.Context, req Request) error {
	if len(req.Images) == 0 {
		return fmt.Errorf("no reference to pull %s from", req.Digest)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running[req.Digest] {
		return nil
	}
	e.running[req.Digest] = true
	delete(e.outcomes, req.Digest)
	go e.run(ctx, req)
	return nil
}

func (e *InProcess) run(ctx context.Context, req Request) {
	outcome := Outcome{Digest: req.Digest}
	select {
	case e.slots <- struct{}{}:
		outcome.Err = e.scan(ctx, req)
		<-e.slots
	case <-ctx.Done():
		outcome.Err = ctx.Err()
	}
	e.mu.Lock()
	delete(e.running, req.Digest)
	e.outcomes[req.Digest] = outcome
	e.mu.Unlock()
	if ctx.Err() == nil {
		e.notify(req.Digest)
	}
}

// scan tries each pinned reference until one gives an SBOM, and stores it.
func (e *InProcess) scan(ctx context.Context, req Request) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	var errs []error
	for _, image := range req.Images {
		options := e.options
		options.Credentials = image.Credentials
		log.FromContext(ctx).V(1).Info("Scanning image", "image", image.Reference)
		generated, err := sbom.Generate(ctx, sbom.Source{Scheme: sbom.SchemeRegistry, Location: image.Reference}, options)
		if err != nil {
			var tooLarge *sbom.TooLargeError
			if errors.As(err, &tooLarge) {
				return err // the same image from another reference is as large
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("the scan did not finish within %s: %w", e.timeout, err)
			}
			errs = append(errs, err)
			continue
		}
		return e.store.Put(req.Digest, generated.JSON)
	}
	return errors.Join(errs...)
}

// Running tells whether a scan of digest is running or waiting for a slot.
func (e *InProcess) Running(_ context.Context, digest string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running[digest]
}

// TakeOutcome returns the outcome of the last finished scan of digest and forgets it.
func (e *InProcess) TakeOutcome(_ context.Context, digest string) (Outcome, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	outcome, ok := e.outcomes[digest]
	delete(e.outcomes, digest)
	return outcome, ok
}
