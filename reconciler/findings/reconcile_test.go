package findings

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	vigilscheme "github.com/vigil-dev/vigil/pkg/scheme"
	"github.com/vigil-dev/vigil/reconciler/conflicts"
)

const log4jName = "cve-2021-44228"

var (
	apiPod = types.NamespacedName{Namespace: "shop", Name: "api-1"}
	api    = Workload{Namespace: "shop", Kind: "Deployment", Name: "api"}
	forbid = apierrors.NewForbidden(schema.GroupResource{Group: "vigil.dev", Resource: "vulnerabilities"}, log4jName, errors.New("no"))
)

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme, err := vigilscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	return scheme
}

// writes counts what Reconcile wrote to the API server, and fails the operation a case names.
type writes struct {
	failOn                                string // get, create, delete, update or status
	failWith                              error
	creates, deletes, updates, statusUpds int
}

func (w *writes) funcs() interceptor.Funcs {
	fail := func(op string) error {
		if w.failOn == op {
			return w.failWith
		}
		return nil
	}
	return interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, object client.Object, options ...client.GetOption) error {
			if err := fail("get"); err != nil {
				return err
			}
			return c.Get(ctx, key, object, options...)
		},
		Create: func(ctx context.Context, c client.WithWatch, object client.Object, options ...client.CreateOption) error {
			if err := fail("create"); err != nil {
				return err
			}
			w.creates++
			return c.Create(ctx, object, options...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, object client.Object, options ...client.DeleteOption) error {
			if err := fail("delete"); err != nil {
				return err
			}
			w.deletes++
			return c.Delete(ctx, object, options...)
		},
		Update: func(ctx context.Context, c client.WithWatch, object client.Object, options ...client.UpdateOption) error {
			if err := fail("update"); err != nil {
				return err
			}
			w.updates++
			return c.Update(ctx, object, options...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, subResource string, object client.Object, options ...client.SubResourceUpdateOption) error {
			if err := fail("status"); err != nil {
				return err
			}
			w.statusUpds++
			return c.Status().Update(ctx, object, options...)
		},
	}
}

func TestReconcile(t *testing.T) {
	const refresh = 10 * time.Minute
	recent := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	stale := metav1.NewTime(time.Now().Add(-2 * refresh).Truncate(time.Second))
	// running is an Index where the api Deployment runs an image with log4j.
	running := func() *Index {
		x := NewIndex()
		x.SetImage(digestA, "registry.example/shop/api:1.4", []vigilv1alpha1.ImageVulnerability{log4j("2.14.1")})
		x.SetPod(apiPod, []RunningContainer{{Digest: digestA, Workload: api, Container: "app"}})
		return x
	}
	// stopped is an Index where the image with log4j is known but nothing runs it.
	stopped := func() *Index {
		x := NewIndex()
		x.SetImage(digestA, "registry.example/shop/api:1.4", []vigilv1alpha1.ImageVulnerability{log4j("2.14.1")})
		return x
	}
	desired := running().Desired(log4jName, recent, nil)
	// existing is the Vulnerability as an earlier reconcile left it, detected at lastDetected.
	existing := func(lastDetected metav1.Time, labels map[string]string) *vigilv1alpha1.Vulnerability {
		status := *desired.DeepCopy()
		for i := range status.Workloads {
			status.Workloads[i].LastDetected = lastDetected
		}
		return &vigilv1alpha1.Vulnerability{ObjectMeta: metav1.ObjectMeta{Name: log4jName, Labels: labels}, Status: status}
	}
	labels := desired.Details.Labels()
	withWorkerToo := func() *vigilv1alpha1.Vulnerability {
		v := existing(recent, labels)
		v.Status.Workloads = append(v.Status.Workloads, vigilv1alpha1.AffectedWorkload{
			Namespace: "shop", Kind: "Deployment", Name: "worker", Container: "app", Digest: digestA, LastDetected: recent})
		v.Status.WorkloadCount = 2
		return v
	}
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: "vigil.dev", Resource: "vulnerabilities"}, log4jName)
	conflict := apierrors.NewConflict(schema.GroupResource{Group: "vigil.dev", Resource: "vulnerabilities"}, log4jName, errors.New("the object has been modified"))

	tests := []struct {
		name     string
		index    func() *Index
		existing *vigilv1alpha1.Vulnerability
		writes   writes
		// want: the Vulnerability after the reconcile (nil: none), and the writes it took.
		wantExists        bool
		wantLastDetected  string // "kept" (the earlier time) or "renewed" (now)
		wantWorkloads     int
		wantLabels        map[string]string
		wantRequeue       time.Duration
		wantErr           string
		wantCreates       int
		wantDeletes       int
		wantUpdates       int
		wantStatusUpdates int
	}{
		{name: "a vulnerability that starts running is created with its labels and status", index: running,
			wantExists: true, wantLastDetected: "renewed", wantWorkloads: 1, wantLabels: labels, wantRequeue: refresh,
			wantCreates: 1, wantStatusUpdates: 1},
		{name: "an unchanged vulnerability within the refresh interval writes nothing", index: running, existing: existing(recent, labels),
			wantExists: true, wantLastDetected: "kept", wantWorkloads: 1, wantLabels: labels, wantRequeue: refresh},
		{name: "a workload detected longer ago than the refresh interval is detected again", index: running, existing: existing(stale, labels),
			wantExists: true, wantLastDetected: "renewed", wantWorkloads: 1, wantLabels: labels, wantRequeue: refresh, wantStatusUpdates: 1},
		{name: "labels that drifted are put back", index: running, existing: existing(recent, map[string]string{vigilv1alpha1.SeverityLabel: "low"}),
			wantExists: true, wantLastDetected: "kept", wantWorkloads: 1, wantLabels: labels, wantRequeue: refresh, wantUpdates: 1},
		{name: "a workload that stopped leaves the status", index: running, existing: withWorkerToo(),
			wantExists: true, wantLastDetected: "kept", wantWorkloads: 1, wantLabels: labels, wantRequeue: refresh, wantStatusUpdates: 1},
		{name: "a vulnerability that no container runs any more is deleted", index: stopped, existing: existing(recent, labels),
			wantDeletes: 1},
		{name: "a vulnerability that neither runs nor exists stays absent", index: stopped},

		{name: "a Vulnerability that cannot be read is not written", index: running, existing: existing(recent, labels),
			writes: writes{failOn: "get", failWith: forbid}, wantExists: true, wantLastDetected: "kept", wantWorkloads: 1, wantLabels: labels,
			wantErr: "reading Vulnerability " + log4jName},
		{name: "a failed create is returned", index: running, writes: writes{failOn: "create", failWith: forbid},
			wantErr: "creating Vulnerability " + log4jName},
		{name: "a failed delete is returned", index: stopped, existing: existing(recent, labels), writes: writes{failOn: "delete", failWith: forbid},
			wantExists: true, wantLastDetected: "kept", wantWorkloads: 1, wantLabels: labels, wantErr: "deleting Vulnerability " + log4jName},
		{name: "a Vulnerability deleted meanwhile is not an error", index: stopped, existing: existing(recent, labels), writes: writes{failOn: "delete", failWith: notFound},
			wantExists: true, wantLastDetected: "kept", wantWorkloads: 1, wantLabels: labels},
		{name: "a failed label update is returned", index: running, existing: existing(recent, nil), writes: writes{failOn: "update", failWith: forbid},
			wantExists: true, wantLastDetected: "kept", wantWorkloads: 1, wantErr: "updating the labels of Vulnerability " + log4jName},
		{name: "a failed status update is returned", index: running, existing: existing(stale, labels), writes: writes{failOn: "status", failWith: forbid},
			wantExists: true, wantLastDetected: "stale", wantWorkloads: 1, wantLabels: labels, wantErr: "updating Vulnerability " + log4jName},
		{name: "a status update that conflicts is looked at again, not logged as an error", index: running, existing: existing(stale, labels), writes: writes{failOn: "status", failWith: conflict},
			wantExists: true, wantLastDetected: "stale", wantWorkloads: 1, wantLabels: labels, wantRequeue: conflicts.RetryAfter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			builder := fake.NewClientBuilder().WithScheme(testScheme(t)).WithStatusSubresource(&vigilv1alpha1.Vulnerability{})
			if tc.existing != nil {
				builder = builder.WithObjects(tc.existing.DeepCopy())
			}
			c := builder.Build()
			w := tc.writes
			r := &Reconciler{Client: interceptor.NewClient(c, w.funcs()), Index: tc.index(), RefreshInterval: refresh}
			before := time.Now().Truncate(time.Second)

			result, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: types.NamespacedName{Name: log4jName}})

			if tc.wantErr == "" && err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, tc.writes.failWith)) {
				t.Fatalf("Reconcile: %v, want an error that says %q and wraps %v", err, tc.wantErr, tc.writes.failWith)
			}
			if result.RequeueAfter != tc.wantRequeue {
				t.Errorf("requeued after %v, want %v", result.RequeueAfter, tc.wantRequeue)
			}
			if got := [4]int{w.creates, w.deletes, w.updates, w.statusUpds}; got != [4]int{tc.wantCreates, tc.wantDeletes, tc.wantUpdates, tc.wantStatusUpdates} {
				t.Errorf("creates, deletes, updates, status updates = %v, want %v", got, [4]int{tc.wantCreates, tc.wantDeletes, tc.wantUpdates, tc.wantStatusUpdates})
			}
			got := &vigilv1alpha1.Vulnerability{}
			err = c.Get(t.Context(), client.ObjectKey{Name: log4jName}, got)
			if exists := err == nil; exists != tc.wantExists {
				t.Fatalf("Vulnerability exists: %t (%v), want %t", exists, err, tc.wantExists)
			}
			if !tc.wantExists {
				return
			}
			if !maps.Equal(got.Labels, tc.wantLabels) {
				t.Errorf("labels %v, want %v", got.Labels, tc.wantLabels)
			}
			if int(got.Status.WorkloadCount) != tc.wantWorkloads || len(got.Status.Workloads) != tc.wantWorkloads {
				t.Fatalf("%d workloads counted, %d listed; want %d", got.Status.WorkloadCount, len(got.Status.Workloads), tc.wantWorkloads)
			}
			if got.Status.Details.ID != "CVE-2021-44228" || got.Status.ImageCount != 1 || got.Status.Workloads[0].Name != "api" {
				t.Errorf("status %+v, want log4j in the api Deployment's image", got.Status)
			}
			last := got.Status.Workloads[0].LastDetected
			switch tc.wantLastDetected {
			case "kept":
				if !last.Equal(&recent) {
					t.Errorf("last detected %v, want the earlier %v", last, recent)
				}
			case "stale":
				if !last.Equal(&stale) {
					t.Errorf("last detected %v, want the unchanged %v", last, stale)
				}
			case "renewed":
				if last.Time.Before(before) {
					t.Errorf("last detected %v, want now (%v or later)", last, before)
				}
			}
		})
	}
}

// requests drains a queue into the sorted names it was asked to reconcile.
func requests(q interface {
	Len() int
	Get() (ctrl.Request, bool)
	Done(ctrl.Request)
}) []string {
	var names []string
	for q.Len() > 0 {
		req, _ := q.Get()
		q.Done(req)
		names = append(names, req.Name)
	}
	slices.Sort(names)
	return names
}

func TestEventsAreMappedToTheVulnerabilitiesTheyAffect(t *testing.T) {
	const otherName = "cve-2026-0001"
	other := vigilv1alpha1.ImageVulnerability{ID: "CVE-2026-0001", Namespace: "nvd:cpe", Severity: vigilv1alpha1.SeverityHigh,
		Package: "openssl", Installed: "3.0.1", Type: "deb"}
	deletedAt := metav1.NewTime(time.Now())
	namespace := func(labels map[string]string, deleting bool) *corev1.Namespace {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: labels}}
		if deleting {
			ns.DeletionTimestamp, ns.Finalizers = &deletedAt, []string{"kubernetes"}
		}
		return ns
	}
	optOut := map[string]string{vigilv1alpha1.ScanningLabel: vigilv1alpha1.ScanningDisabled}
	pod := func(digest string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: apiPod.Namespace, Name: apiPod.Name},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digest)}}}
	}
	scan := func(digest string, matched bool, references []string, findings ...vigilv1alpha1.ImageVulnerability) *vigilv1alpha1.ImageScan {
		s := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: "scan"}, Spec: vigilv1alpha1.ImageScanSpec{Digest: digest}}
		for _, reference := range references {
			s.Spec.References = append(s.Spec.References, vigilv1alpha1.ImageReference{Image: reference, Namespace: "shop"})
		}
		if matched {
			s.Status.Database = &vigilv1alpha1.DatabaseVersion{SchemaVersion: "v6.1.3", Built: now}
			s.Status.Vulnerabilities = findings
		}
		return s
	}
	// Index states before the event.
	imagesKnown := func(x *Index) {
		x.SetImage(digestA, "registry.example/shop/api:1.4", []vigilv1alpha1.ImageVulnerability{log4j("2.14.1")})
		x.SetImage(digestB, "registry.example/shop/api:1.5", []vigilv1alpha1.ImageVulnerability{other})
	}
	apiRuns := func(x *Index) {
		imagesKnown(x)
		x.SetPod(apiPod, []RunningContainer{{Digest: digestA, Workload: Workload{"shop", "Pod", "api-1"}, Container: "app"}})
	}
	podRunsUnscanned := func(x *Index) {
		x.SetPod(apiPod, []RunningContainer{{Digest: digestA, Workload: Workload{"shop", "Pod", "api-1"}, Container: "app"}})
	}
	// Both images have log4j, and each runs.
	bothRunLog4j := func(x *Index) {
		x.SetImage(digestA, "registry.example/shop/api:1.4", []vigilv1alpha1.ImageVulnerability{log4j("2.14.1")})
		x.SetImage(digestB, "registry.example/shop/worker:2.0", []vigilv1alpha1.ImageVulnerability{log4j("2.14.1")})
		x.SetPod(apiPod, []RunningContainer{{Digest: digestA, Workload: Workload{"shop", "Pod", "api-1"}, Container: "app"}})
		x.SetPod(types.NamespacedName{Namespace: "shop", Name: "worker-1"}, []RunningContainer{{Digest: digestB, Workload: Workload{"shop", "Pod", "worker-1"}, Container: "app"}})
	}
	failListing := interceptor.Funcs{List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error { return forbid }}
	failNamespace := interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, object client.Object, options ...client.GetOption) error {
		if _, ok := object.(*corev1.Namespace); ok {
			return forbid
		}
		return c.Get(ctx, key, object, options...)
	}}

	tests := []struct {
		name    string
		before  func(*Index)
		objects []client.Object // in the API server (the informers' caches)
		funcs   interceptor.Funcs
		event   func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request])
		want    []string // the Vulnerabilities asked for
		// The Vulnerabilities that run afterwards, with the image reference of the first.
		wantRunning   []string
		wantReference string
	}{
		{name: "a pod that starts a vulnerable container", before: imagesKnown, objects: []client.Object{namespace(nil, false)},
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.podEvents().Create(t.Context(), event.TypedCreateEvent[client.Object]{Object: pod(digestA)}, q)
			},
			want: []string{log4jName}, wantRunning: []string{log4jName}, wantReference: "registry.example/shop/api:1.4"},
		{name: "a pod whose container runs another image now", before: apiRuns, objects: []client.Object{namespace(nil, false)},
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.podEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{ObjectOld: pod(digestA), ObjectNew: pod(digestB)}, q)
			},
			want: []string{log4jName, otherName}, wantRunning: []string{otherName}, wantReference: "registry.example/shop/api:1.5"},
		{name: "a pod whose namespace cannot be read keeps what it ran", before: apiRuns, objects: []client.Object{namespace(nil, false)}, funcs: failNamespace,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.podEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{ObjectOld: pod(digestA), ObjectNew: pod(digestB)}, q)
			},
			wantRunning: []string{log4jName}, wantReference: "registry.example/shop/api:1.4"},
		{name: "a pod that is deleted", before: apiRuns,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.podEvents().Delete(t.Context(), event.TypedDeleteEvent[client.Object]{Object: pod(digestA)}, q)
			},
			want: []string{log4jName}},

		{name: "a pod that is deleted while another pod runs the same image", before: func(x *Index) {
			apiRuns(x)
			x.SetPod(types.NamespacedName{Namespace: "shop", Name: "api-2"}, []RunningContainer{{Digest: digestA, Workload: Workload{"shop", "Pod", "api-2"}, Container: "app"}})
		},
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.podEvents().Delete(t.Context(), event.TypedDeleteEvent[client.Object]{Object: pod(digestA)}, q)
			},
			want: []string{log4jName}, wantRunning: []string{log4jName}, wantReference: "registry.example/shop/api:1.4"},

		{name: "a namespace that opts out", before: apiRuns, objects: []client.Object{namespace(optOut, false), pod(digestA)},
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.namespaceEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{ObjectOld: namespace(nil, false), ObjectNew: namespace(optOut, false)}, q)
			},
			want: []string{log4jName}},
		{name: "a namespace that opts in again", before: imagesKnown, objects: []client.Object{namespace(nil, false), pod(digestA)},
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.namespaceEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{ObjectOld: namespace(optOut, false), ObjectNew: namespace(nil, false)}, q)
			},
			want: []string{log4jName}, wantRunning: []string{log4jName}, wantReference: "registry.example/shop/api:1.4"},
		{name: "a namespace whose other labels change is not looked at again", before: imagesKnown, objects: []client.Object{namespace(nil, false), pod(digestA)},
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.namespaceEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{
					ObjectOld: namespace(map[string]string{"team": "a"}, false), ObjectNew: namespace(map[string]string{"team": "b"}, false)}, q)
			}},
		{name: "a namespace that starts being deleted", before: apiRuns, objects: []client.Object{namespace(nil, true), pod(digestA)},
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.namespaceEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{ObjectOld: namespace(nil, false), ObjectNew: namespace(nil, true)}, q)
			},
			want: []string{log4jName}},
		{name: "a namespace that is gone", before: apiRuns, objects: []client.Object{pod(digestA)},
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.namespaceEvents().Delete(t.Context(), event.TypedDeleteEvent[client.Object]{Object: namespace(nil, false)}, q)
			},
			want: []string{log4jName}},
		{name: "a namespace whose pods cannot be listed keeps what they ran", before: apiRuns, objects: []client.Object{namespace(optOut, false), pod(digestA)}, funcs: failListing,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.namespaceEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{ObjectOld: namespace(nil, false), ObjectNew: namespace(optOut, false)}, q)
			},
			wantRunning: []string{log4jName}, wantReference: "registry.example/shop/api:1.4"},

		{name: "a running image's first findings", before: podRunsUnscanned,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.imageScanEvents().Create(t.Context(), event.TypedCreateEvent[client.Object]{Object: scan(digestA, true, []string{"registry.example/shop/api:1.4", "registry.example/shop/api:latest"}, log4j("2.14.1"))}, q)
			},
			want: []string{log4jName}, wantRunning: []string{log4jName}, wantReference: "registry.example/shop/api:1.4"},
		{name: "an image matched again with other findings", before: apiRuns,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.imageScanEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{ObjectOld: scan(digestA, true, []string{"registry.example/shop/api:1.4"}, log4j("2.14.1")),
					ObjectNew: scan(digestA, true, []string{"registry.example/shop/api:1.4"}, other)}, q)
			},
			want: []string{log4jName, otherName}, wantRunning: []string{otherName}, wantReference: "registry.example/shop/api:1.4"},
		{name: "an image matched without a reference", before: podRunsUnscanned,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.imageScanEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{ObjectOld: scan(digestA, false, nil), ObjectNew: scan(digestA, true, nil, log4j("2.14.1"))}, q)
			},
			want: []string{log4jName}, wantRunning: []string{log4jName}},
		{name: "an image not matched yet has no findings", before: podRunsUnscanned,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.imageScanEvents().Create(t.Context(), event.TypedCreateEvent[client.Object]{Object: scan(digestA, false, []string{"registry.example/shop/api:1.4"})}, q)
			}},
		{name: "a matched ImageScan without a digest names no image", before: podRunsUnscanned,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.imageScanEvents().Create(t.Context(), event.TypedCreateEvent[client.Object]{Object: scan("", true, []string{"registry.example/shop/api:1.4"}, log4j("2.14.1"))}, q)
			}},
		{name: "an image matched again keeps its findings while it is scanned again", before: apiRuns,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.imageScanEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{ObjectOld: scan(digestA, true, []string{"registry.example/shop/api:1.4"}, log4j("2.14.1")),
					ObjectNew: scan(digestA, false, []string{"registry.example/shop/api:1.4"})}, q)
			},
			wantRunning: []string{log4jName}, wantReference: "registry.example/shop/api:1.4"},
		{name: "an image matched again without a vulnerability that another image still runs", before: bothRunLog4j,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.imageScanEvents().Update(t.Context(), event.TypedUpdateEvent[client.Object]{ObjectOld: scan(digestA, true, []string{"registry.example/shop/api:1.4"}, log4j("2.14.1")),
					ObjectNew: scan(digestA, true, []string{"registry.example/shop/api:1.4"})}, q)
			},
			want: []string{log4jName}, wantRunning: []string{log4jName}, wantReference: "registry.example/shop/worker:2.0"},
		{name: "an ImageScan deleted while another image still runs its vulnerability", before: bothRunLog4j,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.imageScanEvents().Delete(t.Context(), event.TypedDeleteEvent[client.Object]{Object: scan(digestA, true, []string{"registry.example/shop/api:1.4"}, log4j("2.14.1"))}, q)
			},
			want: []string{log4jName}, wantRunning: []string{log4jName}, wantReference: "registry.example/shop/worker:2.0"},
		{name: "an ImageScan that is deleted", before: apiRuns,
			event: func(r *Reconciler, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				r.imageScanEvents().Delete(t.Context(), event.TypedDeleteEvent[client.Object]{Object: scan(digestA, true, []string{"registry.example/shop/api:1.4"}, log4j("2.14.1"))}, q)
			},
			want: []string{log4jName}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(tc.objects...).WithInterceptorFuncs(tc.funcs).Build()
			r := &Reconciler{Client: c, Index: NewIndex(), ExcludedNamespaces: sets.New("vigil-system")}
			tc.before(r.Index)
			q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
			defer q.ShutDown()

			tc.event(r, q)

			if got := requests(q); !slices.Equal(got, tc.want) {
				t.Errorf("requests %v, want %v", got, tc.want)
			}
			var runs []string
			for _, name := range []string{otherName, log4jName} {
				if status := r.Index.Desired(name, now, nil); status != nil {
					runs = append(runs, name)
					if len(runs) == 1 && (len(status.Images) != 1 || status.Images[0].Image != tc.wantReference) {
						t.Errorf("images %+v, want one named %q", status.Images, tc.wantReference)
					}
				}
			}
			if !slices.Equal(runs, tc.wantRunning) {
				t.Errorf("running %v, want %v", runs, tc.wantRunning)
			}
		})
	}
}

func TestADatabaseChangeLooksAgainAtEveryRunningVulnerability(t *testing.T) {
	x := NewIndex()
	x.SetImage(digestA, "registry.example/shop/api:1.4", []vigilv1alpha1.ImageVulnerability{log4j("2.14.1"),
		{ID: "CVE-2026-0001", Severity: vigilv1alpha1.SeverityHigh, Package: "openssl", Installed: "3.0.1", Type: "deb"}})
	x.SetImage(digestB, "registry.example/shop/api:1.5", []vigilv1alpha1.ImageVulnerability{{ID: "CVE-2026-0002", Severity: vigilv1alpha1.SeverityLow}})
	x.SetPod(apiPod, []RunningContainer{{Digest: digestA, Workload: api, Container: "app"}})
	r := &Reconciler{Index: x, changed: make(chan event.TypedGenericEvent[*vigilv1alpha1.Vulnerability], 10)}

	r.DatabaseChanged()

	close(r.changed)
	var names []string
	for e := range r.changed {
		names = append(names, e.Object.Name)
	}
	slices.Sort(names)
	if want := []string{log4jName, "cve-2026-0001"}; !slices.Equal(names, want) {
		t.Errorf("looked again at %v, want %v (not the image that nothing runs)", names, want)
	}
}
