package retention

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/index"
)

// SBOMStore is the part of the SBOM store the Collector uses.
type SBOMStore interface {
	Usage() (digests []string, size int64, err error)
	Delete(digest string) error
}

// Collector deletes ImageScans and SBOMs of images that nothing has run for Retention.
type Collector struct {
	// Client reads ImageScans and Pods from the cache, and writes to the API server.
	Client client.Client
	SBOMs  SBOMStore
	// Retention is how long an image that nothing runs is kept.
	Retention time.Duration
	// Interval is the time between collections; zero means a tenth of Retention, at most ten
	// minutes.
	Interval time.Duration
}

// +kubebuilder:rbac:groups=vigil.dev,resources=imagescans,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=vigil.dev,resources=imagescans/status,verbs=get;update;patch

// NeedLeaderElection is true: only the leader collects.
func (c *Collector) NeedLeaderElection() bool {
	return true
}

// interval is the time between collections, and between renewals of a running image's
// lastRunningTime.
func (c *Collector) interval() time.Duration {
	if c.Interval > 0 {
		return c.Interval
	}
	return min(c.Retention/10, 10*time.Minute)
}

// Start collects every interval until ctx ends.
func (c *Collector) Start(ctx context.Context) error {
	ticker := time.NewTicker(c.interval())
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
		if err := c.Collect(ctx, time.Now()); err != nil && ctx.Err() == nil {
			log.FromContext(ctx).Error(err, "Collecting unused images failed")
		}
	}
}

// Collect renews the lastRunningTime of running images and deletes what nothing ran for
// Retention before now.
func (c *Collector) Collect(ctx context.Context, now time.Time) error {
	logger := log.FromContext(ctx)
	scans := &vigilv1alpha1.ImageScanList{}
	if err := c.Client.List(ctx, scans, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing ImageScans: %w", err)
	}
	known := map[string]bool{}
	for i := range scans.Items {
		scan := scans.Items[i].DeepCopy() // the cache's own copy is never written to
		if scan.Spec.Digest == "" {
			if now.Sub(scan.CreationTimestamp.Time) > c.Retention {
				deleted, err := c.delete(ctx, scan)
				if err != nil {
					return err
				}
				if deleted {
					logger.V(1).Info("Collected an image reference that never resolved", "imageScan", klog.KObj(scan))
				}
			}
			continue
		}
		known[scan.Spec.Digest] = true
		running, err := index.Runs(ctx, c.Client, scan.Spec.Digest)
		if err != nil {
			return err
		}
		if running {
			if last := scan.Status.LastRunningTime; last == nil || now.Sub(last.Time) >= c.interval() {
				patch := client.MergeFrom(scan.DeepCopy())
				at := metav1.NewTime(now.Truncate(time.Second))
				scan.Status.LastRunningTime = &at
				if err := c.Client.Status().Patch(ctx, scan, patch); client.IgnoreNotFound(err) != nil {
					return fmt.Errorf("renewing the lastRunningTime of ImageScan %s: %w", scan.Name, err)
				}
			}
			continue
		}
		last := scan.CreationTimestamp.Time
		if scan.Status.LastRunningTime != nil {
			last = scan.Status.LastRunningTime.Time
		}
		if now.Sub(last) <= c.Retention {
			continue
		}
		deleted, err := c.delete(ctx, scan)
		if err != nil {
			return err
		}
		if !deleted {
			continue // its SBOM stays with it
		}
		delete(known, scan.Spec.Digest)
		if err := c.SBOMs.Delete(scan.Spec.Digest); err != nil {
			return err
		}
		collected.Inc()
		logger.V(1).Info("Collected an image that nothing ran within the retention period", "imageScan", klog.KObj(scan))
	}

	imageScans.Set(float64(len(scans.Items)))
	digests, size, err := c.SBOMs.Usage()
	if err != nil {
		return err
	}
	// SBOMs that no ImageScan in the list names: their ImageScan was collected or deleted by
	// hand. One that the cache shows now was recorded since the list was taken (a new image
	// scanned during the walk, or one deleted by hand and recorded again): a scan stores an SBOM
	// only for an ImageScan already in the cache, so this look-up keeps every new SBOM.
	for _, digest := range digests {
		if known[digest] {
			continue
		}
		err := c.Client.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ImageScanName(digest)}, &vigilv1alpha1.ImageScan{})
		if err == nil {
			continue
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading the ImageScan of %s: %w", digest, err)
		}
		if err := c.SBOMs.Delete(digest); err != nil {
			return err
		}
	}
	storeBytes.Set(float64(size))
	return nil
}

// delete deletes scan, unless it was replaced since it was read, and tells whether it is gone.
func (c *Collector) delete(ctx context.Context, scan *vigilv1alpha1.ImageScan) (bool, error) {
	err := c.Client.Delete(ctx, scan, client.Preconditions{UID: &scan.UID, ResourceVersion: &scan.ResourceVersion})
	if err == nil || apierrors.IsNotFound(err) { // NotFound: deleted meanwhile
		return true, nil
	}
	if apierrors.IsConflict(err) {
		// Changed meanwhile (a new reference, a new status: it may run again): it stays, with
		// its SBOM, and the next collection looks at it again.
		return false, nil
	}
	return false, fmt.Errorf("deleting ImageScan %s: %w", scan.Name, err)
}
