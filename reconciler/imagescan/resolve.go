package imagescan

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/sbom"
)

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

	target := &vigilv1alpha1.ImageScan{}
	err := r.Client.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ImageScanName(resolved)}, target)
	switch {
	case apierrors.IsNotFound(err):
		target = &vigilv1alpha1.ImageScan{
			ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(resolved)},
			Spec:       vigilv1alpha1.ImageScanSpec{Digest: resolved, References: scan.Spec.References},
		}
		if err := r.Client.Create(ctx, target); err != nil {
			return ctrl.Result{}, fmt.Errorf("creating ImageScan %s: %w", target.Name, err)
		}
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading ImageScan %s: %w", target.Name, err)
	default:
		changed := false
		for _, reference := range scan.Spec.References {
			changed = target.Spec.AddReference(reference) || changed
		}
		if changed {
			if err := r.Client.Update(ctx, target); err != nil {
				return ctrl.Result{}, fmt.Errorf("adding references to ImageScan %s: %w", target.Name, err)
			}
		}
	}
	r.Events.Eventf(target, nil, corev1.EventTypeNormal, ReasonResolved, "Resolve", "Resolved %s to %s", scan.Spec.References[0].Image, resolved)
	if err := r.Client.Delete(ctx, scan); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("deleting the resolved ImageScan %s: %w", scan.Name, err)
	}
	log.FromContext(ctx).V(1).Info("Resolved image reference", "image", scan.Spec.References[0].Image, "digest", resolved)
	return ctrl.Result{}, nil
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
