package findings

import (
	"context"
	"fmt"
	"maps"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/digest"
	"github.com/vigil-dev/vigil/reconciler/conflicts"
)

// Reconciler keeps the Vulnerability objects equal to what runs now. It watches Pods (the
// running containers), ImageScans (the findings of each image) and Namespaces, keeps them joined
// in an Index that a restart rebuilds from the informers before the first reconcile, and
// reconciles each Vulnerability by name from the Index, with the details the vulnerability
// database records.
type Reconciler struct {
	Client client.Client
	Index  *Index
	// Describer reads vulnerability details from the vulnerability database.
	Describer Describer
	// ExcludedNamespaces are Vigil's own namespace and those the administrator excluded, whose
	// pods are not reported.
	ExcludedNamespaces sets.Set[string]
	// RefreshInterval is how often a workload's lastDetected is renewed while it runs; between
	// renewals an unchanged cluster causes no writes.
	RefreshInterval time.Duration

	// changed carries Vulnerability names whose inputs changed.
	changed chan event.TypedGenericEvent[*vigilv1alpha1.Vulnerability]
}

// +kubebuilder:rbac:groups=vigil.dev,resources=vulnerabilities,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=vigil.dev,resources=vulnerabilities/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=replicasets,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch
// +kubebuilder:rbac:groups=vigil.dev,resources=imagescans,verbs=get;list;watch

// SetupWithManager registers the reconciler and its watches.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.changed = make(chan event.TypedGenericEvent[*vigilv1alpha1.Vulnerability], 1024)
	return ctrl.NewControllerManagedBy(mgr).
		Named("vulnerabilities").
		For(&vigilv1alpha1.Vulnerability{}).
		Watches(&corev1.Pod{}, r.podEvents()).
		Watches(&corev1.Namespace{}, r.namespaceEvents()).
		Watches(&vigilv1alpha1.ImageScan{}, r.imageScanEvents()).
		WatchesRawSource(source.Channel(r.changed, &handler.TypedEnqueueRequestForObject[*vigilv1alpha1.Vulnerability]{})).
		Complete(r)
}

// podEvents records a pod's running containers in the Index as it starts, changes and goes, and
// asks for the Vulnerabilities they affect.
func (r *Reconciler) podEvents() handler.TypedFuncs[client.Object, reconcile.Request] {
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.podChanged(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.podChanged(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(q, r.Index.RemovePod(client.ObjectKeyFromObject(e.Object)))
		},
	}
}

// namespaceEvents looks again at the pods of a namespace that opts in or out, starts or stops
// being deleted, or is gone.
func (r *Reconciler) namespaceEvents() handler.TypedFuncs[client.Object, reconcile.Request] {
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if optedOut(e.ObjectOld) != optedOut(e.ObjectNew) || deleting(e.ObjectOld) != deleting(e.ObjectNew) {
				r.namespaceChanged(ctx, e.ObjectNew.GetName(), q)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.namespaceChanged(ctx, e.Object.GetName(), q)
		},
	}
}

// imageScanEvents records the findings of each image in the Index, and forgets those of an
// image whose ImageScan is gone.
func (r *Reconciler) imageScanEvents() handler.TypedFuncs[client.Object, reconcile.Request] {
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(_ context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.imageScanChanged(e.Object, q)
		},
		UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.imageScanChanged(e.ObjectNew, q)
		},
		DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if scan, ok := e.Object.(*vigilv1alpha1.ImageScan); ok && scan.Spec.Digest != "" {
				enqueue(q, r.Index.RemoveImage(scan.Spec.Digest))
			}
		},
	}
}

// imageScanChanged records the findings of an image once it was matched; they stay while it is
// scanned again.
func (r *Reconciler) imageScanChanged(object client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	scan, ok := object.(*vigilv1alpha1.ImageScan)
	if !ok || scan.Spec.Digest == "" || scan.Status.Database == nil {
		return
	}
	reference := ""
	if len(scan.Spec.References) > 0 {
		reference = scan.Spec.References[0].Image
	}
	enqueue(q, r.Index.SetImage(scan.Spec.Digest, reference, scan.Status.Vulnerabilities))
}

// DatabaseChanged asks the reconciler to look at every Vulnerability again: their details come
// from the database.
func (r *Reconciler) DatabaseChanged() {
	for _, name := range r.Index.Names() {
		vulnerability := &vigilv1alpha1.Vulnerability{}
		vulnerability.Name = name
		r.changed <- event.TypedGenericEvent[*vigilv1alpha1.Vulnerability]{Object: vulnerability}
	}
}

func enqueue(q workqueue.TypedRateLimitingInterface[reconcile.Request], names []string) {
	for _, name := range names {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
	}
}

func optedOut(namespace client.Object) bool {
	return namespace.GetLabels()[vigilv1alpha1.ScanningLabel] == vigilv1alpha1.ScanningDisabled
}

// deleting tells whether an object is being deleted.
func deleting(object client.Object) bool {
	return object.GetDeletionTimestamp() != nil
}

// podChanged records the running containers of a pod in the Index.
func (r *Reconciler) podChanged(ctx context.Context, object client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	pod, ok := object.(*corev1.Pod)
	if !ok {
		return
	}
	containers, err := r.runningContainers(ctx, pod)
	if err != nil {
		log.FromContext(ctx).Error(err, "Resolving the workload of a pod failed", "pod", klog.KObj(pod))
		return
	}
	enqueue(q, r.Index.SetPod(client.ObjectKeyFromObject(pod), containers))
}

// namespaceChanged looks again at every pod of a namespace that opted in or out.
func (r *Reconciler) namespaceChanged(ctx context.Context, namespace string, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.InNamespace(namespace)); err != nil {
		log.FromContext(ctx).Error(err, "Listing the pods of a namespace failed", "namespace", namespace)
		return
	}
	for i := range pods.Items {
		r.podChanged(ctx, &pods.Items[i], q)
	}
}

// runningContainers are the containers of pod that run now with a known image digest, with the
// pod's top-level workload. A pod that ended, or of an ignored or opted-out namespace, has none.
func (r *Reconciler) runningContainers(ctx context.Context, pod *corev1.Pod) ([]RunningContainer, error) {
	if r.ExcludedNamespaces.Has(pod.Namespace) || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil, nil
	}
	namespace := &corev1.Namespace{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: pod.Namespace}, namespace); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading namespace %s: %w", pod.Namespace, err)
	}
	if optedOut(namespace) || deleting(namespace) {
		return nil, nil
	}
	var containers []RunningContainer
	var workload *Workload
	for _, statuses := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, status := range statuses {
			imageDigest := digest.FromImageID(status.ImageID)
			if status.State.Running == nil || imageDigest == "" {
				continue
			}
			if workload == nil {
				w, err := r.workloadOf(ctx, pod)
				if err != nil {
					return nil, err
				}
				workload = &w
			}
			containers = append(containers, RunningContainer{Digest: imageDigest, Workload: *workload, Container: status.Name})
		}
	}
	return containers, nil
}

// workloadOf resolves a pod's top-level owner: ReplicaSet → Deployment, Job → CronJob,
// StatefulSet, DaemonSet, a bare ReplicaSet or Job, or the pod itself. Owners are read from
// metadata-only caches.
func (r *Reconciler) workloadOf(ctx context.Context, pod *corev1.Pod) (Workload, error) {
	owner := metav1.GetControllerOf(pod)
	if owner == nil {
		return Workload{Namespace: pod.Namespace, Kind: "Pod", Name: pod.Name}, nil
	}
	workload := Workload{Namespace: pod.Namespace, Kind: owner.Kind, Name: owner.Name}
	var parentKind string
	switch owner.Kind {
	case "ReplicaSet":
		parentKind = "Deployment"
	case "Job":
		parentKind = "CronJob"
	default:
		return workload, nil
	}
	metadata := &metav1.PartialObjectMetadata{}
	if owner.Kind == "ReplicaSet" {
		metadata.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))
	} else {
		metadata.SetGroupVersionKind(batchv1.SchemeGroupVersion.WithKind("Job"))
	}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: owner.Name}, metadata); err != nil {
		if apierrors.IsNotFound(err) {
			return workload, nil
		}
		return workload, fmt.Errorf("reading %s %s/%s: %w", owner.Kind, pod.Namespace, owner.Name, err)
	}
	if parent := metav1.GetControllerOf(metadata); parent != nil && parent.Kind == parentKind {
		workload.Kind, workload.Name = parent.Kind, parent.Name
	}
	return workload, nil
}

// Reconcile makes one Vulnerability equal to what runs now: created when the first vulnerable
// container runs, updated as containers start and stop, deleted when none is left. A write that
// conflicts (the cache behind this reconciler's own last write) is not an error to log: the
// Vulnerability is made again from its newer copy.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return conflicts.Reconcile(ctx, req, "Vulnerability", r.reconcile)
}

func (r *Reconciler) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	now := time.Now().Truncate(time.Second)
	desired := r.Index.Desired(req.Name, metav1.NewTime(now), r.Describer)
	current := &vigilv1alpha1.Vulnerability{}
	err := r.Client.Get(ctx, req.NamespacedName, current)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("reading Vulnerability %s: %w", req.Name, err)
	}
	exists := err == nil
	logger := log.FromContext(ctx)

	if desired == nil {
		if exists {
			if err := r.Client.Delete(ctx, current); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("deleting Vulnerability %s: %w", req.Name, err)
			}
			logger.Info("Vulnerability no longer runs", "vulnerability", req.Name)
		}
		return ctrl.Result{}, nil
	}

	labels := desired.Details.Labels()
	if !exists {
		current = &vigilv1alpha1.Vulnerability{ObjectMeta: metav1.ObjectMeta{Name: req.Name, Labels: labels}}
		if err := r.Client.Create(ctx, current); err != nil {
			return ctrl.Result{}, fmt.Errorf("creating Vulnerability %s: %w", req.Name, err)
		}
		logger.Info("Vulnerability runs", "vulnerability", req.Name, "severity", desired.Details.Severity)
	} else {
		refreshLastDetected(desired, current.Status.Workloads, now, r.RefreshInterval)
		if !maps.Equal(current.Labels, labels) {
			current.Labels = labels
			if err := r.Client.Update(ctx, current); err != nil {
				return ctrl.Result{}, fmt.Errorf("updating the labels of Vulnerability %s: %w", req.Name, err)
			}
		}
	}
	if !equality.Semantic.DeepEqual(current.Status, *desired) {
		current.Status = *desired
		if err := r.Client.Status().Update(ctx, current); err != nil {
			return ctrl.Result{}, fmt.Errorf("updating Vulnerability %s: %w", req.Name, err)
		}
	}
	return ctrl.Result{RequeueAfter: r.RefreshInterval}, nil
}
