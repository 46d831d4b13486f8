package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/sbomstore"
)

// InProcess scans in the manager's process, a bounded number at a time: for the local demo and
// small clusters. It runs on the elected leader only, so an attempt it does not know of is lost.
type InProcess struct {
	store    *sbomstore.Store
	options  sbom.Options
	timeout  time.Duration
	outcomes OutcomeRecorder
	slots    chan struct{}

	mu      sync.Mutex
	running map[string]int32
}

// NewInProcess returns an executor that runs at most concurrency scans at once, each within
// timeout, with options (platform, bounds, registry access), stores SBOMs in store and records
// each outcome with outcomes.
func NewInProcess(store *sbomstore.Store, options sbom.Options, concurrency int, timeout time.Duration, outcomes OutcomeRecorder) *InProcess {
	return &InProcess{
		store: store, options: options, timeout: timeout, outcomes: outcomes,
		slots:   make(chan struct{}, concurrency),
		running: map[string]int32{},
	}
}

// Submit starts the attempt in the background unless it runs already.
func (e *InProcess) Submit(ctx context.Context, req Request) error {
	if len(req.Images) == 0 {
		return fmt.Errorf("no reference to pull %s from", req.Digest)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if attempt, ok := e.running[req.Digest]; ok && attempt == req.Attempt {
		return nil
	}
	e.running[req.Digest] = req.Attempt
	go e.run(context.WithoutCancel(ctx), ctx.Done(), req)
	return nil
}

// run scans and records the outcome; it gives up when stop closes (the manager stops).
func (e *InProcess) run(ctx context.Context, stop <-chan struct{}, req Request) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	outcome := Outcome{Digest: req.Digest, Attempt: req.Attempt}
	select {
	case e.slots <- struct{}{}:
		outcome.ImageSize, outcome.Err = e.scan(ctx, req)
		<-e.slots
	case <-ctx.Done():
		outcome.Err = ctx.Err()
	}
	if ctx.Err() == nil {
		e.record(ctx, outcome)
	}
	e.mu.Lock()
	if e.running[req.Digest] == req.Attempt {
		delete(e.running, req.Digest)
	}
	e.mu.Unlock()
}

// record persists outcome, retrying with backoff until it is persisted, stale, or the manager
// stops.
// The wait starts at 100 ms and doubles up to 10 s. (wait.Backoff is not used: reaching its Cap
// ends its steps, which gave up after seven tries.)
func (e *InProcess) record(ctx context.Context, outcome Outcome) {
	delay := 100 * time.Millisecond
	for {
		err := e.outcomes.RecordOutcome(ctx, outcome)
		if err == nil || errors.Is(err, ErrStaleAttempt) {
			return
		}
		log.FromContext(ctx).Error(err, "Recording a scan outcome failed; retrying", "digest", outcome.Digest)
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// scan tries each pinned reference until one gives an SBOM, and stores it.
func (e *InProcess) scan(ctx context.Context, req Request) (int64, error) {
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
				return 0, err // the same image from another reference is as large
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return 0, fmt.Errorf("the scan did not finish within %s: %w", e.timeout, err)
			}
			errs = append(errs, err)
			continue
		}
		return generated.ImageSize, e.store.Put(req.Digest, generated.JSON)
	}
	return 0, errors.Join(errs...)
}

// Check tells whether this process runs the attempt; one it does not run is lost, because its
// outcome is recorded before it stops running.
func (e *InProcess) Check(_ context.Context, digest string, _ types.UID, attempt int32) (State, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if running, ok := e.running[digest]; ok && running == attempt {
		return Running, nil
	}
	return Lost, nil
}
