package imagescan

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/index"
)

// grantTTL is how long a slot granted to an ImageScan waits for its scan to start.
const grantTTL = 30 * time.Second

// Dispatcher bounds the scans in flight, with the in-process executor and the Job executor
// alike, and decides which waiting image goes next: images never scanned before images scanned
// again, then the namespaces with the fewest scans in flight first, each namespace's oldest image
// first, so that no namespace can starve another. What it knows is derived from the ImageScans
// in the cache (their phases); a restarted manager rebuilds it as it goes.
type Dispatcher struct {
	// Reader lists ImageScans from the cache.
	Reader client.Reader
	// Concurrency bounds the scans in flight.
	Concurrency int
	// Due tells whether a Pending ImageScan may start now (its retry wait is over).
	Due func(scan *vigilv1alpha1.ImageScan, now time.Time) bool

	mu     sync.Mutex
	grants map[string]grant
	wake   chan struct{}
	// start asks the scan reconciler to look at an ImageScan that was granted a slot.
	start func(name string)
}

type grant struct {
	at    time.Time
	taken bool
	// attempt is the number of the attempt that took the grant.
	attempt int32
	// uid is the granted ImageScan's: one deleted and recorded again under the same name is
	// another ImageScan, whose grant this is not.
	uid types.UID
}

// Take tells whether the ImageScan name was granted a slot, and takes it for its attempt
// number attempt.
func (d *Dispatcher) Take(name string, attempt int32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	g, ok := d.grants[name]
	if !ok || g.taken {
		return false
	}
	g.taken, g.attempt = true, attempt
	d.grants[name] = g
	return true
}

// Release gives back the slot that name took without starting its scan (the write of its
// attempt failed), so that its next reconcile takes it again instead of waiting for the grant to
// expire with the slot held.
func (d *Dispatcher) Release(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if g, ok := d.grants[name]; ok {
		g.taken = false
		d.grants[name] = g
	}
}

// Trigger asks the dispatcher to look for free slots soon.
func (d *Dispatcher) Trigger() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// NeedLeaderElection is true: only the leader scans.
func (d *Dispatcher) NeedLeaderElection() bool {
	return true
}

// Start dispatches when triggered, and every two seconds, until ctx ends.
func (d *Dispatcher) Start(ctx context.Context) error {
	ticker := time.NewTicker(2 * time.Second)
	defer ticker.Stop()
	for {
		if err := d.dispatch(ctx, time.Now()); err != nil {
			log.FromContext(ctx).Error(err, "Dispatching scans failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
			// Gather the triggers of a burst into one round.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(50 * time.Millisecond):
			}
		case <-ticker.C:
		}
	}
}

// dispatch grants the free slots.
func (d *Dispatcher) dispatch(ctx context.Context, now time.Time) error {
	scanning := &vigilv1alpha1.ImageScanList{}
	if err := d.Reader.List(ctx, scanning, client.MatchingFields{index.ImageScanPhase: string(vigilv1alpha1.ImageScanScanning)}, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	pending := &vigilv1alpha1.ImageScanList{}
	if err := d.Reader.List(ctx, pending, client.MatchingFields{index.ImageScanPhase: string(vigilv1alpha1.ImageScanPending)}, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	next := d.choose(scanning.Items, pending.Items, now)
	for _, name := range next {
		d.start(name)
	}
	scansInFlight.Set(float64(len(scanning.Items)))
	scansQueued.Set(float64(len(pending.Items)))
	return nil
}

// choose returns the ImageScans to grant a slot, and records the grants.
func (d *Dispatcher) choose(scanning, pending []vigilv1alpha1.ImageScan, now time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.grants == nil {
		d.grants = map[string]grant{}
	}
	// The Pending ImageScans, as the cache shows them.
	pendingByName := map[string]*vigilv1alpha1.ImageScan{}
	for i := range pending {
		pendingByName[pending[i].Name] = &pending[i]
	}
	inFlight := map[string]int{}
	for i := range scanning {
		inFlight[namespaceOf(&scanning[i])]++
	}
	granted := 0
	for name, g := range d.grants {
		// A grant lasts until its scan leaves Pending, until its attempt is back in Pending
		// (it failed or was lost before a round saw it Scanning: the slot is free again), or
		// until it expires, or its ImageScan is deleted and another recorded under its name.
		// A taken grant of a scan that the cache still shows Pending with its previous attempt
		// is a scan in flight that the cache has not caught up with.
		scan, isPending := pendingByName[name]
		if !isPending || scan.UID != g.uid || (g.taken && scan.Status.Attempts >= g.attempt) || now.Sub(g.at) > grantTTL {
			delete(d.grants, name)
			continue
		}
		granted++
	}
	free := d.Concurrency - len(scanning) - granted
	if free <= 0 {
		return nil
	}

	// Candidates by class (first scans, then scans again), then by namespace, oldest first.
	type candidate struct {
		name, namespace string
		uid             types.UID
		again           bool
		created         time.Time
	}
	var candidates []candidate
	for i := range pending {
		scan := &pending[i]
		if _, ok := d.grants[scan.Name]; ok || !d.Due(scan, now) {
			continue
		}
		candidates = append(candidates, candidate{
			name: scan.Name, uid: scan.UID, namespace: namespaceOf(scan), again: scan.Status.Database != nil,
			created: scan.CreationTimestamp.Time,
		})
	}
	slices.SortFunc(candidates, func(a, b candidate) int {
		if a.again != b.again {
			if a.again {
				return 1
			}
			return -1
		}
		return cmp.Or(a.created.Compare(b.created), cmp.Compare(a.name, b.name))
	})
	var chosen []string
	for len(chosen) < free && len(candidates) > 0 {
		// The first class still waiting; within it, the namespace with the fewest in flight
		// (counting this round's grants), then its oldest image.
		best := -1
		for i, c := range candidates {
			if c.again != candidates[0].again {
				break
			}
			if best < 0 || inFlight[c.namespace] < inFlight[candidates[best].namespace] {
				best = i
			}
		}
		c := candidates[best]
		candidates = slices.Delete(candidates, best, best+1)
		inFlight[c.namespace]++
		d.grants[c.name] = grant{at: now, uid: c.uid}
		chosen = append(chosen, c.name)
	}
	return chosen
}

// namespaceOf is the namespace a scan is counted for: its first reference's.
func namespaceOf(scan *vigilv1alpha1.ImageScan) string {
	if len(scan.Spec.References) == 0 {
		return ""
	}
	return scan.Spec.References[0].Namespace
}
