package webhook

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestARunningPodsImagesAreRecordedOncePerImageAndDigest(t *testing.T) {
	first := "sha256:" + strings.Repeat("1", 64)
	second := "sha256:" + strings.Repeat("2", 64)
	container := func(name, image string) corev1.Container { return corev1.Container{Name: name, Image: image} }
	running := func(name, digest string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, ImageID: "registry.example/shop/api@" + digest,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	}
	tests := []struct {
		name       string
		containers []corev1.Container
		statuses   []corev1.ContainerStatus
		want       []string // image@digest of each record
	}{
		{name: "two containers of one image and digest",
			containers: []corev1.Container{container("a", "api:1"), container("b", "api:1")},
			statuses:   []corev1.ContainerStatus{running("a", first), running("b", first)},
			want:       []string{"api:1@" + first}},
		{name: "one tag pulled at two digests (a tag moved between restarts)",
			containers: []corev1.Container{container("a", "api:1"), container("b", "api:1")},
			statuses:   []corev1.ContainerStatus{running("a", first), running("b", second)},
			want:       []string{"api:1@" + first, "api:1@" + second}},
		{name: "two images not started yet",
			containers: []corev1.Container{container("a", "api:1"), container("b", "worker:1")},
			want:       []string{"api:1@", "worker:1@"}},
		{name: "two images at one digest",
			containers: []corev1.Container{container("a", "api:1"), container("b", "api:latest")},
			statuses:   []corev1.ContainerStatus{running("a", first), running("b", first)},
			want:       []string{"api:1@" + first, "api:latest@" + first}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-1"},
				Spec: corev1.PodSpec{Containers: tc.containers}, Status: corev1.PodStatus{ContainerStatuses: tc.statuses}}
			var got []string
			for _, record := range PodRecords(pod) {
				got = append(got, record.Image+"@"+record.Digest)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("records %v, want %v", got, tc.want)
			}
		})
	}
}
