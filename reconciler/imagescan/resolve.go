package imagescan

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/sbom"
)

// maxResolvingPerNamespace bounds the references of one namespace resolved at once, so that a
// namespace whose registry never answers holds at most that many of the resolving workers;
// resolveBusyWait is how long a reference waits when its namespace is at the bound.
const (
	maxResolvingPerNamespace = 2
	resolveBusyWait          = time.Second
)

// namespaceSlots counts the resolutions in flight by namespace; its zero value is ready.
type namespaceSlots struct {
	mu       sync.Mutex
	inFlight map[string]int
}

// start takes a slot of namespace, unless it has maxResolvingPerNamespace in flight.
func (s *namespaceSlots) start(namespace string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight[namespace] >= maxResolvingPerNamespace {
		return false
	}
	if s.inFlight == nil {
		s.inFlight = map[string]int{}
	}
	s.inFlight[namespace]++
	return true
}

// done gives back a slot that start took.
func (s *namespaceSlots) done(namespace string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inFlight[namespace]--; s.inFlight[namespace] <= 0 {
		delete(s.inFlight, namespace)
	}
}

// resolve resolves a recorded reference to its digest, moves its references to the digest's
// ImageScan and deletes the reference's own. Each reference is resolved with its own
// workload's credentials only.
func (r *Reconciler) resolve(ctx context.Context, scan *vigilv1alpha1.ImageScan) (ctrl.Result, error) {
	if scan.Status.Phase == vigilv1alpha1.ImageScanFailed && resolvedCondition(scan).ObservedGeneration == scan.Generation {
		return ctrl.Result{}, nil
	}
	if wait := r.retryWait(scan, time.Now()); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	namespace := namespaceOf(scan)
	if !r.resolving.start(namespace) {
		return ctrl.Result{RequeueAfter: resolveBusyWait}, nil
	}
	defer r.resolving.done(namespace)
	var failures []error
	resolved := ""
	for _, reference := range scan.Spec.References {
		options := r.Registry
		options.Credentials = r.credentials(ctx, reference)
		digest, err := sbom.Resolve(ctx, reference.Image, options)
		if err != nil {
			failures = append(failures, err)
			continue
		}
		resolved = digest
		break
	}
	if resolved == "" {
		return r.resolveFailed(ctx, scan, errors.Join(failures...))
	}

	target, err := r.moveReferences(ctx, scan, resolved)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.Events.Eventf(target, nil, corev1.EventTypeNormal, ReasonResolved, "Resolve", "Resolved %s to %s", scan.Spec.References[0].Image, resolved)
	// Deleted only as it was read: a reference recorded on it meanwhile is resolved and moved
	// by the next reconcile instead of being lost with it.
	err = r.Client.Delete(ctx, scan, client.Preconditions{UID: &scan.UID, ResourceVersion: &scan.ResourceVersion})
	if client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("deleting the resolved ImageScan %s: %w", scan.Name, err)
	}
	log.FromContext(ctx).V(1).Info("Resolved image reference", "image", scan.Spec.References[0].Image, "digest", resolved)
	return ctrl.Result{}, nil
}

// errConfirmWithAPIServer asks moveReferences to read the digest's ImageScan again from the API
// server: the cache's copy held the references already, and may be of an ImageScan deleted
// meanwhile, which would leave them nowhere once the reference's own ImageScan goes.
var errConfirmWithAPIServer = errors.New("the cached ImageScan holds the references already")

// moveReferences adds scan's references to the ImageScan of digest, created when there is
// none, and returns that ImageScan. A write that races another (a reference of the same
// digest resolved by another worker, the recorder, a status write) is made again on a fresh
// copy rather than failing the resolution, which would ask the registry again. The first try
// reads the cache; a try after a race reads the API server, which the cache may be behind.
func (r *Reconciler) moveReferences(ctx context.Context, scan *vigilv1alpha1.ImageScan, digest string) (*vigilv1alpha1.ImageScan, error) {
	target := &vigilv1alpha1.ImageScan{}
	raced := func(err error) bool { // NotFound: the cache's copy was deleted meanwhile
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) ||
			errors.Is(err, errConfirmWithAPIServer)
	}
	var reader client.Reader = r.Client
	fromCache := true
	err := retry.OnError(retry.DefaultBackoff, raced, func() error {
		defer func() { reader, fromCache = r.APIReader, false }()
		target = &vigilv1alpha1.ImageScan{}
		err := reader.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ImageScanName(digest)}, target)
		switch {
		case apierrors.IsNotFound(err):
			target = &vigilv1alpha1.ImageScan{
				ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(digest)},
				Spec:       vigilv1alpha1.ImageScanSpec{Digest: digest, References: scan.Spec.References},
			}
			if err := r.Client.Create(ctx, target); err != nil {
				return fmt.Errorf("creating ImageScan %s: %w", target.Name, err)
			}
			return nil
		case err != nil:
			return fmt.Errorf("reading ImageScan %s: %w", target.Name, err)
		}
		changed := false
		for _, reference := range scan.Spec.References {
			changed = target.Spec.AddReference(reference) || changed
		}
		if !changed {
			if fromCache {
				// Nothing to write is no proof: the ImageScan may be deleted already.
				return errConfirmWithAPIServer
			}
			return nil
		}
		if err := r.Client.Update(ctx, target); err != nil {
			return fmt.Errorf("adding references to ImageScan %s: %w", target.Name, err)
		}
		return nil
	})
	return target, err
}

func (r *Reconciler) resolveFailed(ctx context.Context, scan *vigilv1alpha1.ImageScan, err error) (ctrl.Result, error) {
	reason, message := sbom.Explain(err, ReasonResolveFailed)
	status := scan.Status.DeepCopy()
	if resolvedCondition(scan).ObservedGeneration != scan.Generation {
		status.Attempts = 0 // new references since the last failure: a fresh series of attempts
	}
	status.Attempts++
	now := metav1.NewTime(time.Now())
	status.LastAttemptTime = &now
	final := status.Attempts >= r.MaxAttempts || reason == sbom.ReasonRegistryDenied
	status.Phase = vigilv1alpha1.ImageScanPending
	if final {
		status.Phase = vigilv1alpha1.ImageScanFailed
	}
	setCondition(status, scan, vigilv1alpha1.ConditionResolved, metav1.ConditionFalse, reason, message)
	if err := r.writeStatus(ctx, scan, status); err != nil {
		return ctrl.Result{}, err
	}
	r.Events.Eventf(scan, nil, corev1.EventTypeWarning, reason, "Resolve", "Could not resolve %s: %s", scan.Spec.References[0].Image, message)
	if final {
		// A new reference (another namespace, another workload) changes the spec and tries again.
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: r.backoff(status.Attempts)}, nil
}
