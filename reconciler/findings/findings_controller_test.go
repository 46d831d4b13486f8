package findings

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

func owner(kind, name string) []metav1.OwnerReference {
	apiVersion := "apps/v1"
	if kind == "Job" || kind == "CronJob" {
		apiVersion = "batch/v1"
	}
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: "u", Controller: ptr.To(true)}}
}

func running(digest string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: "app", ImageID: "registry.example/app@" + digest,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
	}
}

func TestRunningContainers(t *testing.T) {
	scheme := clientgoscheme.Scheme
	deleting := metav1.NewTime(time.Now())
	objects := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sandbox", Labels: map[string]string{vigilv1alpha1.ScanningLabel: vigilv1alpha1.ScanningDisabled}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "leaving", DeletionTimestamp: &deleting, Finalizers: []string{"kubernetes"}}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-7d4b", OwnerReferences: owner("Deployment", "api")}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "bare-rs"}},
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "report-29400180", OwnerReferences: owner("CronJob", "report")}},
	}
	r := &Reconciler{Client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects...).Build(), ExcludedNamespaces: sets.New("vigil-system", "kube-system")}

	tests := []struct {
		name string
		pod  corev1.Pod
		want []RunningContainer
	}{
		{
			name: "a Deployment's pod",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-7d4b-x", OwnerReferences: owner("ReplicaSet", "api-7d4b")}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
			want: []RunningContainer{{Digest: digestA, Workload: Workload{"shop", "Deployment", "api"}, Container: "app"}},
		},
		{
			name: "a bare ReplicaSet's pod",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "bare-rs-x", OwnerReferences: owner("ReplicaSet", "bare-rs")}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
			want: []RunningContainer{{Digest: digestA, Workload: Workload{"shop", "ReplicaSet", "bare-rs"}, Container: "app"}},
		},
		{
			name: "a CronJob's Job's pod",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "report-x", OwnerReferences: owner("Job", "report-29400180")}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digestB)}}},
			want: []RunningContainer{{Digest: digestB, Workload: Workload{"shop", "CronJob", "report"}, Container: "app"}},
		},
		{
			name: "a StatefulSet's pod",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-0", OwnerReferences: owner("StatefulSet", "db")}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
			want: []RunningContainer{{Digest: digestA, Workload: Workload{"shop", "StatefulSet", "db"}, Container: "app"}},
		},
		{
			name: "a bare pod",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "tool"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
			want: []RunningContainer{{Digest: digestA, Workload: Workload{"shop", "Pod", "tool"}, Container: "app"}},
		},
		{
			name: "a terminated container",
			pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "done"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", ImageID: "registry.example/app@" + digestA, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}},
			}}}},
		},
		{
			name: "a container without a registry digest",
			pod: corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "local"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", ImageID: "sha256:" + strings.Repeat("c", 64), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			}}}},
		},
		{
			name: "a Succeeded pod",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "finished"}, Status: corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
		},
		{
			name: "a Failed pod",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "failed"}, Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
		},
		{
			name: "a namespace that opted out",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "sandbox", Name: "web"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
		},
		{
			name: "a namespace being deleted",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "leaving", Name: "web"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
		},
		{
			name: "a deleted namespace",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "gone", Name: "web"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
		},
		{
			name: "a namespace the administrator excluded",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "dns"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
		},
		{
			name: "Vigil's own namespace",
			pod:  corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: "scan"}, Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{running(digestA)}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.runningContainers(context.Background(), &tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("runningContainers = %+v, want %+v", got, tc.want)
			}
		})
	}
}
