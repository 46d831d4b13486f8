package podimages

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/index"
	"github.com/vigil-dev/vigil/webhook"
)

// Recorder is the part of the Recorder that the pod watch uses: it records images, and forgets
// the references of a digest's ImageScan that was deleted.
type Recorder interface {
	webhook.Enqueuer
	Forget(scan *vigilv1alpha1.ImageScan)
}

// retryRefused is when a pod's images are offered again after the Recorder refused one (its
// queue, or its namespace's bound, was full), rather than at the pod's next change, which a
// long-running pod may never have.
const retryRefused = time.Minute

// Reconciler records the images of Pods as ImageScans, through the same Recorder as the
// webhook, so that an image is recorded once whichever path sees it first.
type Reconciler struct {
	Client   client.Client
	Recorder Recorder
	// ExcludedNamespaces are Vigil's own namespace and those the administrator excluded, whose
	// pods are not recorded.
	ExcludedNamespaces sets.Set[string]
}

// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// SetupWithManager registers the reconciler; it reacts to pods that are created or whose images
// or container statuses change, and to the deletion of a digest's ImageScan.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("podimages").
		For(&corev1.Pod{}, builder.WithPredicates(predicate.Funcs{
			DeleteFunc: func(e event.DeleteEvent) bool { return false },
		})).
		Watches(&vigilv1alpha1.ImageScan{}, handler.Funcs{DeleteFunc: r.imageScanDeleted}).
		Complete(r)
}

// imageScanDeleted makes the Recorder forget the references of a digest's ImageScan that was
// deleted (by hand, or collected) and records again the pods that run the digest, so that the
// ImageScan comes back, and its image is scanned, at once rather than once the Recorder's memory
// of those references runs out.
func (r *Reconciler) imageScanDeleted(ctx context.Context, e event.DeleteEvent, queue workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	scan, ok := e.Object.(*vigilv1alpha1.ImageScan)
	if !ok || scan.Spec.Digest == "" {
		return // a reference's own ImageScan goes once it is resolved
	}
	r.Recorder.Forget(scan)
	pods, err := index.PodsRunning(ctx, r.Client, scan.Spec.Digest)
	if err != nil {
		// The pods are recorded again when their status next changes.
		log.FromContext(ctx).Error(err, "Listing the pods that run a deleted ImageScan's image failed", "imageScan", klog.KObj(scan))
		return
	}
	for i := range pods {
		queue.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&pods[i])})
	}
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
	refused := false
	for _, record := range webhook.PodRecords(pod) {
		if !r.Recorder.Enqueue(record) {
			refused = true
		}
	}
	if refused {
		return ctrl.Result{RequeueAfter: retryRefused}, nil
	}
	return ctrl.Result{}, nil
}
