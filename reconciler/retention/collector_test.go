package retention

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/index"
	"github.com/vigil-dev/vigil/pkg/sbomstore"
)

func digestOf(c string) string { return "sha256:" + strings.Repeat(c, 64) }

func TestTheCollectorKeepsWhatRunsAndCollectsWhatDoesNot(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	days := func(n int) metav1.Time { return metav1.NewTime(now.Add(-time.Duration(n) * 24 * time.Hour)) }
	scan := func(digest string, created metav1.Time, lastRunning *metav1.Time) *vigilv1alpha1.ImageScan {
		name := vigilv1alpha1.ImageScanName(digest)
		if digest == "" {
			name = vigilv1alpha1.ReferenceScanName("registry.example/gone:1")
		}
		return &vigilv1alpha1.ImageScan{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: created},
			Spec:       vigilv1alpha1.ImageScanSpec{Digest: digest, References: []vigilv1alpha1.ImageReference{{Image: "x"}}},
			Status:     vigilv1alpha1.ImageScanStatus{LastRunningTime: lastRunning},
		}
	}
	old := days(8)
	running := scan(digestOf("a"), days(30), &old)          // runs now, though it last ran long ago
	stopped := scan(digestOf("b"), days(30), &old)          // nothing ran it for 8 days
	young := scan(digestOf("c"), days(1), nil)              // recorded yesterday, never ran
	recent := scan(digestOf("d"), days(30), ptrTo(days(2))) // ran 2 days ago
	unresolved := scan("", days(8), nil)                    // a reference that never resolved
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-1"},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", ImageID: "registry.example/shop/api@" + digestOf("a"), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = vigilv1alpha1.AddToScheme(scheme)
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(running, stopped, young, recent, unresolved, pod).
		WithStatusSubresource(&vigilv1alpha1.ImageScan{}).
		WithIndex(&corev1.Pod{}, index.PodRunningDigest, func(o client.Object) []string { return index.RunningDigests(o.(*corev1.Pod)) }).
		Build()
	store, err := sbomstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{digestOf("a"), digestOf("b"), digestOf("c"), digestOf("e")} {
		if err := store.Put(d, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	collector := &Collector{Client: c, SBOMs: store, Retention: 7 * 24 * time.Hour}
	if err := collector.Collect(context.Background(), now); err != nil {
		t.Fatal(err)
	}

	exists := func(scan *vigilv1alpha1.ImageScan) bool {
		err := c.Get(context.Background(), client.ObjectKeyFromObject(scan), &vigilv1alpha1.ImageScan{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	for _, kept := range []*vigilv1alpha1.ImageScan{running, young, recent} {
		if !exists(kept) {
			t.Errorf("%s was collected", kept.Name)
		}
	}
	for _, gone := range []*vigilv1alpha1.ImageScan{stopped, unresolved} {
		if exists(gone) {
			t.Errorf("%s was kept", gone.Name)
		}
	}
	if !store.Has(digestOf("a")) || !store.Has(digestOf("c")) {
		t.Error("the SBOM of a kept image was removed")
	}
	if store.Has(digestOf("b")) || store.Has(digestOf("e")) {
		t.Error("the SBOM of a collected image, or one that no ImageScan names, was kept")
	}
	renewed := &vigilv1alpha1.ImageScan{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(running), renewed); err != nil {
		t.Fatal(err)
	}
	if renewed.Status.LastRunningTime == nil || !renewed.Status.LastRunningTime.Time.Equal(now) {
		t.Errorf("the running image's lastRunningTime is %v, want %v", renewed.Status.LastRunningTime, now)
	}

	// A second collection soon after writes nothing: the renewal is at most once an interval.
	before := renewed.ResourceVersion
	if err := collector.Collect(context.Background(), now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(running), renewed); err != nil {
		t.Fatal(err)
	}
	if renewed.ResourceVersion != before {
		t.Error("a steady running image was written again within the refresh interval")
	}
}

func ptrTo(t metav1.Time) *metav1.Time { return &t }
