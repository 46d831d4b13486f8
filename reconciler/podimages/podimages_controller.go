package podimages

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/webhook"
)

// Reconciler records the images of Pods as ImageScans, through the same Recorder as the
// webhook, so that an image is recorded once whichever path sees it first.
type Reconciler struct {
	Client   client.Client
	Recorder webhook.Enqueuer
	// ExcludedNamespaces are Vigil's own namespace and those the administrator excluded, whose
	// pods are not recorded.
	ExcludedNamespaces sets.Set[string]
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// SetupWithManager registers the reconciler; it reacts to pods that are created or whose images
// or container statuses change.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("podimages").
		For(&corev1.Pod{}, builder.WithPredicates(predicate.Funcs{
			DeleteFunc: func(e event.DeleteEvent) bool { return false },
		})).
		Complete(r)
}

// Reconcile records the images of one Pod.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if r.ExcludedNamespaces.Has(req.Namespace) {
		return ctrl.Result{}, nil
	}
	pod := &corev1.Pod{}
	if err := r.Client.Get(ctx, req.NamespacedName, pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return ctrl.Result{}, nil
	}
	namespace := &corev1.Namespace{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: pod.Namespace}, namespace); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("reading namespace %s: %w", pod.Namespace, err)
	}
	if namespace.Labels[vigilv1alpha1.ScanningLabel] == vigilv1alpha1.ScanningDisabled {
		return ctrl.Result{}, nil
	}
	for _, record := range webhook.PodRecords(pod) {
		r.Recorder.Enqueue(record)
	}
	return ctrl.Result{}, nil
}
