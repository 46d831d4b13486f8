package podimages

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/index"
	"github.com/vigil-dev/vigil/pkg/recorder"
)

// queue keeps what it is given, unless full, and the ImageScans it is told to forget.
type queue struct {
	records   []recorder.ImageRecord
	forgotten []string
	full      bool
}

func (q *queue) Enqueue(record recorder.ImageRecord) bool {
	if q.full {
		return false
	}
	q.records = append(q.records, record)
	return true
}

func (q *queue) Forget(scan *vigilv1alpha1.ImageScan) {
	q.forgotten = append(q.forgotten, scan.Name)
}

func TestThePodWatchRecordsOnlyWhatVigilScans(t *testing.T) {
	scheme := clientgoscheme.Scheme
	namespace := func(name string, labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	pod := func(namespace string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "app"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
			Status:     corev1.PodStatus{Phase: phase},
		}
	}
	tests := []struct {
		name      string
		pod       *corev1.Pod
		full      bool
		want      int
		wantRetry bool
	}{
		{name: "a pod of a namespace that scans", pod: pod("shop", corev1.PodRunning), want: 1},
		{name: "a pod of an excluded namespace", pod: pod("kube-system", corev1.PodRunning)},
		{name: "a pod of Vigil's own namespace", pod: pod("vigil-system", corev1.PodRunning)},
		{name: "a pod of a namespace that opted out", pod: pod("sandbox", corev1.PodRunning)},
		{name: "a pod that ended", pod: pod("shop", corev1.PodSucceeded)},
		{name: "a pod whose record the full recorder refused is offered again later", pod: pod("shop", corev1.PodRunning), full: true, wantRetry: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.pod,
				namespace("shop", nil), namespace("kube-system", nil), namespace("vigil-system", nil),
				namespace("sandbox", map[string]string{vigilv1alpha1.ScanningLabel: vigilv1alpha1.ScanningDisabled}),
			).Build()
			q := &queue{full: tc.full}
			r := &Reconciler{Client: c, Recorder: q, ExcludedNamespaces: sets.New("vigil-system", "kube-system")}
			result, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: tc.pod.Namespace, Name: tc.pod.Name}})
			if err != nil {
				t.Fatal(err)
			}
			if len(q.records) != tc.want {
				t.Errorf("recorded %+v, want %d records", q.records, tc.want)
			}
			if retry := result.RequeueAfter > 0; retry != tc.wantRetry {
				t.Errorf("offered again later: %t, want %t", retry, tc.wantRetry)
			}
		})
	}
}

func TestADeletedImageScanIsRecordedAgainFromThePodsThatRunIt(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	otherDigest := "sha256:" + strings.Repeat("cd", 32)
	pod := func(name, digest string, running bool) *corev1.Pod {
		status := corev1.ContainerStatus{Name: "app", ImageID: "registry.example/shop/api@" + digest}
		if running {
			status.State.Running = &corev1.ContainerStateRunning{}
		}
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/shop/api:1.4"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{status}},
		}
	}
	imageScan := func(digest string) *vigilv1alpha1.ImageScan {
		name := vigilv1alpha1.ReferenceScanName("registry.example/shop/api:1.4")
		if digest != "" {
			name = vigilv1alpha1.ImageScanName(digest)
		}
		return &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: vigilv1alpha1.ImageScanSpec{Digest: digest, References: []vigilv1alpha1.ImageReference{{Image: "registry.example/shop/api:1.4", Namespace: "shop"}}}}
	}
	tests := []struct {
		name          string
		deleted       *vigilv1alpha1.ImageScan
		wantForgotten bool
		wantPods      []string
	}{
		{name: "a digest's ImageScan: forgotten, and the pods that run the digest recorded again",
			deleted: imageScan(digest), wantForgotten: true, wantPods: []string{"api-1", "api-2"}},
		{name: "a reference's own ImageScan, deleted once resolved: nothing to do",
			deleted: imageScan("")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).
				WithIndex(&corev1.Pod{}, index.PodRunningDigest, func(o client.Object) []string { return index.RunningDigests(o.(*corev1.Pod)) }).
				WithObjects(pod("api-1", digest, true), pod("api-2", digest, true), pod("api-starting", digest, false), pod("web", otherDigest, true)).
				Build()
			q := &queue{}
			r := &Reconciler{Client: c, Recorder: q}
			requests := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
			defer requests.ShutDown()
			r.imageScanDeleted(t.Context(), event.DeleteEvent{Object: tc.deleted}, requests)
			if forgotten := len(q.forgotten) == 1; forgotten != tc.wantForgotten {
				t.Errorf("the Recorder told to forget %v, want it told: %t", q.forgotten, tc.wantForgotten)
			}
			var pods []string
			for requests.Len() > 0 {
				request, _ := requests.Get()
				pods = append(pods, request.Name)
				requests.Done(request)
			}
			slices.Sort(pods)
			if !slices.Equal(pods, tc.wantPods) {
				t.Errorf("pods recorded again %v, want %v", pods, tc.wantPods)
			}
		})
	}
}
