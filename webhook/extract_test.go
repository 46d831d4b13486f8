package webhook

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/vigil-dev/vigil/pkg/recorder"
)

// samplePodSpec uses init, regular and ephemeral containers, one image twice, and pull secrets.
func samplePodSpec() corev1.PodSpec {
	return corev1.PodSpec{
		ServiceAccountName: "api",
		ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "registry-credentials"}, {Name: "registry-credentials"}, {Name: "mirror"}},
		InitContainers:     []corev1.Container{{Name: "migrate", Image: "registry.example/shop/migrate:2"}},
		Containers: []corev1.Container{
			{Name: "app", Image: "registry.example/shop/api:1.4"},
			{Name: "sidecar", Image: "registry.example/mesh/proxy@sha256:" + sha},
			{Name: "again", Image: "registry.example/shop/api:1.4"},
		},
		EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox:1.36"}}},
	}
}

const sha = "9f2c4d1e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"

func sampleRecords(namespace, kind, name string) []recorder.ImageRecord {
	var records []recorder.ImageRecord
	for _, image := range []string{"registry.example/shop/migrate:2", "registry.example/shop/api:1.4", "registry.example/mesh/proxy@sha256:" + sha, "busybox:1.36"} {
		records = append(records, recorder.ImageRecord{Image: image, Namespace: namespace, WorkloadKind: kind, WorkloadName: name})
	}
	return records
}

func TestExtractImagesOfEveryKind(t *testing.T) {
	template := corev1.PodTemplateSpec{Spec: samplePodSpec()}
	meta := metav1.ObjectMeta{Name: "api", Namespace: "shop"}
	tests := []struct {
		kind   schema.GroupVersionKind
		object any
	}{
		{schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, corev1.Pod{ObjectMeta: meta, Spec: samplePodSpec()}},
		{appsv1.SchemeGroupVersion.WithKind("Deployment"), appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Template: template}}},
		{appsv1.SchemeGroupVersion.WithKind("StatefulSet"), appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: template}}},
		{appsv1.SchemeGroupVersion.WithKind("DaemonSet"), appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: template}}},
		{appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: template}}},
		{batchv1.SchemeGroupVersion.WithKind("Job"), batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: template}}},
		{batchv1.SchemeGroupVersion.WithKind("CronJob"), batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: template}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.kind.Kind, func(t *testing.T) {
			// The records name the workload, never the pull credentials its spec claims.
			want := sampleRecords("shop", tc.kind.Kind, "api")
			raw, err := json.Marshal(tc.object)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ExtractImages(tc.kind, "", "", raw)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ExtractImages =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestExtractImagesEdgeCases(t *testing.T) {
	pod := schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
	tests := []struct {
		name      string
		kind      schema.GroupVersionKind
		namespace string
		raw       string
		want      []recorder.ImageRecord
		wantErr   error
	}{
		{
			name: "the request's namespace and name when the object has none",
			kind: pod, namespace: "jobs", raw: `{"spec":{"containers":[{"image":"alpine:3.17"}]}}`,
			want: []recorder.ImageRecord{{Image: "alpine:3.17", Namespace: "jobs", WorkloadKind: "Pod", WorkloadName: "report-1"}},
		},
		{name: "no containers", kind: pod, raw: `{"spec":{}}`, want: nil},
		{name: "a container without an image", kind: pod, raw: `{"spec":{"containers":[{"name":"x"}]}}`, want: nil},
		{name: "a ConfigMap", kind: schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, raw: `{}`, wantErr: ErrUnknownKind},
		{name: "a Deployment of another group", kind: schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Deployment"}, raw: `{}`, wantErr: ErrUnknownKind},
		{name: "an image that is not a string", kind: pod, raw: `{"spec":{"containers":[{"image":7}]}}`, wantErr: errAny},
		{name: "not JSON", kind: pod, raw: `{"spec":`, wantErr: errAny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExtractImages(tc.kind, tc.namespace, "report-1", []byte(tc.raw))
			switch {
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && err != nil:
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ExtractImages = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// errAny stands for any error in the tables.
var errAny = errors.New("any error")

func TestPodRecords(t *testing.T) {
	digest := "sha256:" + sha
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "api-1", Namespace: "shop"},
		Spec: corev1.PodSpec{
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "creds"}},
			InitContainers:   []corev1.Container{{Name: "migrate", Image: "migrate:2"}},
			Containers: []corev1.Container{
				{Name: "app", Image: "registry.example/shop/api:1.4"},
				{Name: "pending", Image: "registry.example/shop/worker:3"},
			},
		},
		Status: corev1.PodStatus{
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "migrate", ImageID: "migrate@sha256:" + sha, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", ImageID: "docker-pullable://registry.example/shop/api@" + digest, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
				{Name: "pending", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}},
			},
		},
	}
	want := []recorder.ImageRecord{
		{Image: "registry.example/shop/api:1.4", Digest: digest, Namespace: "shop", WorkloadKind: "Pod", WorkloadName: "api-1"},
		{Image: "registry.example/shop/worker:3", Namespace: "shop", WorkloadKind: "Pod", WorkloadName: "api-1"},
	}
	if got := PodRecords(pod); !reflect.DeepEqual(got, want) {
		t.Errorf("PodRecords =\n%+v\nwant\n%+v", got, want)
	}
}
