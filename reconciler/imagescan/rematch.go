package imagescan

import (
	"cmp"
	"context"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/index"
)

// Rematcher matches every Scanned image again after the database changes, one at a time and
// below first matches (the Gate), the images that run now first, so that re-matching never holds
// up a new image. An image whose SBOM this replica's store lacks (a new leader without the old
// one's volume) is scanned again in the background, after every image never scanned; its
// findings stay meanwhile.
type Rematcher struct {
	Scans *Reconciler
	// Reader lists ImageScans and Pods from the cache.
	Reader client.Reader

	wake chan struct{}
}

// NewRematcher returns the Rematcher of scans.
func NewRematcher(scans *Reconciler, reader client.Reader) *Rematcher {
	return &Rematcher{Scans: scans, Reader: reader, wake: make(chan struct{}, 1)}
}

// DatabaseChanged asks the Rematcher to match every image against the database now in use.
func (m *Rematcher) DatabaseChanged() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// NeedLeaderElection is true: only the leader matches.
func (m *Rematcher) NeedLeaderElection() bool {
	return true
}

// Start re-matches when the database changes, and looks every minute, until ctx ends.
func (m *Rematcher) Start(ctx context.Context) error {
	ticker := time.NewTicker(time.Minute)
	defer ticker.Stop()
	for {
		if err := m.rematch(ctx); err != nil && ctx.Err() == nil {
			log.FromContext(ctx).Error(err, "Matching stored SBOMs against the database failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.wake:
		case <-ticker.C:
		}
	}
}

// rematch matches every Scanned image whose findings come from another database.
func (m *Rematcher) rematch(ctx context.Context) error {
	built := m.Scans.Database.Built()
	if built.IsZero() {
		return nil
	}
	stale, err := m.stale(ctx, built)
	if err != nil {
		return err
	}
	rematchesPending.Set(float64(len(stale)))
	for i, name := range stale {
		if ctx.Err() != nil {
			return nil
		}
		scan := &vigilv1alpha1.ImageScan{}
		if err := m.Reader.Get(ctx, client.ObjectKey{Name: name}, scan); err != nil {
			continue // collected meanwhile
		}
		if !isStale(scan, built) {
			continue
		}
		if !m.Scans.SBOMs.Has(scan.Spec.Digest) {
			if err := m.rescan(ctx, scan); err != nil {
				return err
			}
		} else if _, err := m.Scans.match(ctx, scan, false); err != nil {
			log.FromContext(ctx).Error(err, "Matching a stored SBOM again failed", "imageScan", klog.KObj(scan))
		}
		rematchesPending.Set(float64(len(stale) - i - 1))
	}
	return nil
}

// stale lists the Scanned images matched against another database than built, those that run
// now first.
func (m *Rematcher) stale(ctx context.Context, built time.Time) ([]string, error) {
	scanned := &vigilv1alpha1.ImageScanList{}
	if err := m.Reader.List(ctx, scanned, client.MatchingFields{index.ImageScanPhase: string(vigilv1alpha1.ImageScanScanned)}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	type entry struct {
		name    string
		running bool
	}
	var entries []entry
	for i := range scanned.Items {
		scan := &scanned.Items[i]
		if !isStale(scan, built) {
			continue
		}
		running, err := index.Runs(ctx, m.Reader, scan.Spec.Digest)
		if err != nil {
			return nil, err
		}
		entries = append(entries, entry{name: scan.Name, running: running})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		if a.running != b.running {
			if a.running {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.name, b.name)
	})
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.name
	}
	return names, nil
}

// isStale tells whether scan's findings come from another database than built.
func isStale(scan *vigilv1alpha1.ImageScan, built time.Time) bool {
	return scan.Status.Phase == vigilv1alpha1.ImageScanScanned &&
		(scan.Status.Database == nil || !scan.Status.Database.Built.Equal(&metav1.Time{Time: built}))
}

// rescan puts a Scanned image whose SBOM is not in this replica's store back in the queue; its
// findings stay until the new scan is matched.
func (m *Rematcher) rescan(ctx context.Context, scan *vigilv1alpha1.ImageScan) error {
	status := scan.Status.DeepCopy()
	status.Phase = vigilv1alpha1.ImageScanPending
	newSeries(status)
	status.LastAttemptTime = nil
	setCondition(status, scan, vigilv1alpha1.ConditionSBOMStored, metav1.ConditionFalse, ReasonRescan,
		"A new vulnerability database needs the SBOM, which this replica's store lacks; scanning again")
	if err := m.Scans.writeStatus(ctx, scan, status); err != nil {
		return err
	}
	rescans.Inc()
	m.Scans.Dispatcher.Trigger()
	return nil
}
