package podimages

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/recorder"
)

// queue keeps what it is given.
type queue []recorder.ImageRecord

func (q *queue) Enqueue(record recorder.ImageRecord) bool {
	*q = append(*q, record)
	return true
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
		name string
		pod  *corev1.Pod
		want int
	}{
		{"a pod of a namespace that scans", pod("shop", corev1.PodRunning), 1},
		{"a pod of an excluded namespace", pod("kube-system", corev1.PodRunning), 0},
		{"a pod of Vigil's own namespace", pod("vigil-system", corev1.PodRunning), 0},
		{"a pod of a namespace that opted out", pod("sandbox", corev1.PodRunning), 0},
		{"a pod that ended", pod("shop", corev1.PodSucceeded), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(tc.pod,
				namespace("shop", nil), namespace("kube-system", nil), namespace("vigil-system", nil),
				namespace("sandbox", map[string]string{vigilv1alpha1.ScanningLabel: vigilv1alpha1.ScanningDisabled}),
			).Build()
			q := &queue{}
			r := &Reconciler{Client: c, Recorder: q, ExcludedNamespaces: sets.New("vigil-system", "kube-system")}
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: tc.pod.Namespace, Name: tc.pod.Name}}); err != nil {
				t.Fatal(err)
			}
			if len(*q) != tc.want {
				t.Errorf("recorded %+v, want %d records", *q, tc.want)
			}
		})
	}
}
