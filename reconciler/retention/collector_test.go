package retention

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/index"
	"github.com/vigil-dev/vigil/pkg/sbomstore"
	vigilscheme "github.com/vigil-dev/vigil/pkg/scheme"
	"github.com/vigil-dev/vigil/test/testlog"
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
	scheme, err := vigilscheme.New()
	if err != nil {
		t.Fatal(err)
	}
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

// fakeSBOMs is an SBOM store of digests that fails as told.
type fakeSBOMs struct {
	digests   map[string]bool
	deleteErr error
	usageErr  error
}

func (s *fakeSBOMs) Usage() ([]string, int64, error) {
	if s.usageErr != nil {
		return nil, 0, s.usageErr
	}
	return slices.Sorted(maps.Keys(s.digests)), int64(100 * len(s.digests)), nil
}

func (s *fakeSBOMs) Delete(digest string) error {
	if s.deleteErr != nil {
		return s.deleteErr
	}
	delete(s.digests, digest)
	return nil
}

// fakeClient is a fake API server holding objects, with the pod index the Collector reads,
// whose calls go through funcs first.
func fakeClient(t *testing.T, funcs interceptor.Funcs, objects ...client.Object) client.Client {
	t.Helper()
	scheme, err := vigilscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects...).
		WithStatusSubresource(&vigilv1alpha1.ImageScan{}).
		WithIndex(&corev1.Pod{}, index.PodRunningDigest, func(o client.Object) []string { return index.RunningDigests(o.(*corev1.Pod)) }).
		WithInterceptorFuncs(funcs).
		Build()
}

// runningPod is a pod whose one container runs digest.
func runningPod(digest string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-1"},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", ImageID: "registry.example/shop/api@" + digest, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
}

// imageScan is the ImageScan of digest (of a reference that never resolved when digest is
// empty), created and last running that long before now (never, when lastRunning is negative).
func imageScan(digest string, now time.Time, created, lastRunning time.Duration) *vigilv1alpha1.ImageScan {
	name := vigilv1alpha1.ImageScanName(digest)
	if digest == "" {
		name = vigilv1alpha1.ReferenceScanName("registry.example/gone:1")
	}
	scan := &vigilv1alpha1.ImageScan{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(now.Add(-created))},
		Spec:       vigilv1alpha1.ImageScanSpec{Digest: digest, References: []vigilv1alpha1.ImageReference{{Image: "x"}}},
	}
	if lastRunning >= 0 {
		scan.Status.LastRunningTime = ptrTo(metav1.NewTime(now.Add(-lastRunning)))
	}
	return scan
}

func TestWhatTheCollectorKeepsAndWhenItRenews(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	const (
		never = -1
		day   = 24 * time.Hour
		week  = 7 * day
	)
	tests := []struct {
		name                string
		retention, interval time.Duration
		unresolved          bool
		created             time.Duration
		lastRunning         time.Duration // never: no lastRunningTime recorded
		running             bool
		wantKept            bool
		wantRenewed         bool
	}{
		{name: "an image that stopped exactly the retention period ago is kept", retention: week, created: 30 * day, lastRunning: week, wantKept: true},
		{name: "an image that stopped a second longer ago is collected", retention: week, created: 30 * day, lastRunning: week + time.Second},
		{name: "an image that ran lately is kept, however old its ImageScan", retention: week, created: 30 * day, lastRunning: day, wantKept: true},
		{name: "an image that never ran is kept for the retention period after it was recorded", retention: week, created: week, lastRunning: never, wantKept: true},
		{name: "an image that never ran is collected after that", retention: week, created: week + time.Second, lastRunning: never},
		{name: "a reference that never resolved is kept for the retention period", retention: week, unresolved: true, created: week, lastRunning: never, wantKept: true},
		{name: "a reference that never resolved is collected after that", retention: week, unresolved: true, created: week + time.Second, lastRunning: never},
		{name: "a running image is kept however long ago it last ran, and renewed", retention: week, created: 30 * day, lastRunning: 30 * day, running: true, wantKept: true, wantRenewed: true},
		{name: "a running image's first run is recorded", retention: week, created: 30 * day, lastRunning: never, running: true, wantKept: true, wantRenewed: true},
		{name: "a running image is renewed once the interval has passed", retention: week, interval: time.Minute, created: day, lastRunning: time.Minute, running: true, wantKept: true, wantRenewed: true},
		{name: "a running image is not renewed within the interval", retention: week, interval: time.Minute, created: day, lastRunning: time.Minute - time.Second, running: true, wantKept: true},
		{name: "a week's retention renews every ten minutes", retention: week, created: day, lastRunning: 10 * time.Minute, running: true, wantKept: true, wantRenewed: true},
		{name: "a week's retention does not renew within ten minutes", retention: week, created: day, lastRunning: 10*time.Minute - time.Second, running: true, wantKept: true},
		{name: "an hour's retention renews every six minutes", retention: time.Hour, created: day, lastRunning: 6 * time.Minute, running: true, wantKept: true, wantRenewed: true},
		{name: "an hour's retention does not renew within six minutes", retention: time.Hour, created: day, lastRunning: 6*time.Minute - time.Second, running: true, wantKept: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			digest := digestOf("a")
			scanDigest := digest
			if tc.unresolved {
				scanDigest = ""
			}
			scan := imageScan(scanDigest, now, tc.created, tc.lastRunning)
			objects := []client.Object{scan}
			if tc.running {
				objects = append(objects, runningPod(digest))
			}
			c := fakeClient(t, interceptor.Funcs{}, objects...)
			sboms := &fakeSBOMs{digests: map[string]bool{digest: true}}
			collector := &Collector{Client: c, SBOMs: sboms, Retention: tc.retention, Interval: tc.interval}
			if err := collector.Collect(t.Context(), now); err != nil {
				t.Fatal(err)
			}

			got := &vigilv1alpha1.ImageScan{}
			err := c.Get(t.Context(), client.ObjectKeyFromObject(scan), got)
			if err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
			if kept := err == nil; kept != tc.wantKept {
				t.Fatalf("ImageScan kept: %t, want %t", kept, tc.wantKept)
			}
			if !tc.unresolved && sboms.digests[digest] != tc.wantKept {
				t.Errorf("SBOM kept: %t, want %t", sboms.digests[digest], tc.wantKept)
			}
			if !tc.wantKept {
				return
			}
			want := scan.Status.LastRunningTime
			if tc.wantRenewed {
				want = ptrTo(metav1.NewTime(now))
			}
			if !got.Status.LastRunningTime.Equal(want) {
				t.Errorf("lastRunningTime %v, want %v", got.Status.LastRunningTime, want)
			}
		})
	}
}

func TestACollectionThatFailsSaysWhyAndLosesNothing(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	week := 7 * 24 * time.Hour
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: vigilv1alpha1.GroupVersion.Group, Resource: "imagescans"}, "x", errors.New("denied"))
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: vigilv1alpha1.GroupVersion.Group, Resource: "imagescans"}, "x")
	conflict := apierrors.NewConflict(schema.GroupResource{Group: vigilv1alpha1.GroupVersion.Group, Resource: "imagescans"}, "x", errors.New("changed"))
	failList := func(of client.ObjectList) func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
		return func(ctx context.Context, c client.WithWatch, list client.ObjectList, options ...client.ListOption) error {
			if reflect.TypeOf(list) == reflect.TypeOf(of) {
				return errors.New("connection refused")
			}
			return c.List(ctx, list, options...)
		}
	}
	failDelete := func(err error) func(context.Context, client.WithWatch, client.Object, ...client.DeleteOption) error {
		return func(context.Context, client.WithWatch, client.Object, ...client.DeleteOption) error { return err }
	}
	failStatus := func(err error) func(context.Context, client.Client, string, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
		return func(context.Context, client.Client, string, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
			return err
		}
	}
	tests := []struct {
		name       string
		unresolved bool
		running    bool
		funcs      interceptor.Funcs
		sboms      fakeSBOMs
		wantErr    string // empty: no error
		wantScan   bool
		wantSBOM   bool
	}{
		{name: "the ImageScans cannot be listed", funcs: interceptor.Funcs{List: failList(&vigilv1alpha1.ImageScanList{})},
			wantErr: "listing ImageScans: connection refused", wantScan: true, wantSBOM: true},
		{name: "the pods that run an image cannot be listed", funcs: interceptor.Funcs{List: failList(&corev1.PodList{})},
			wantErr: "listing the pods that run " + digestOf("b") + ": connection refused", wantScan: true, wantSBOM: true},
		{name: "deleting the ImageScan is forbidden", funcs: interceptor.Funcs{Delete: failDelete(forbidden)},
			wantErr: "deleting ImageScan " + vigilv1alpha1.ImageScanName(digestOf("b")), wantScan: true, wantSBOM: true},
		{name: "deleting a reference that never resolved is forbidden", unresolved: true, funcs: interceptor.Funcs{Delete: failDelete(forbidden)},
			wantErr: "deleting ImageScan " + vigilv1alpha1.ReferenceScanName("registry.example/gone:1"), wantScan: true, wantSBOM: true},
		{name: "the ImageScan was deleted meanwhile: its SBOM goes too", funcs: interceptor.Funcs{Delete: failDelete(notFound)},
			wantScan: true, wantSBOM: false},
		{name: "the ImageScan changed meanwhile: it and its SBOM are looked at again next time", funcs: interceptor.Funcs{Delete: failDelete(conflict)},
			wantScan: true, wantSBOM: true},
		{name: "the SBOM cannot be deleted", sboms: fakeSBOMs{deleteErr: errors.New("read-only file system")},
			wantErr: "read-only file system", wantSBOM: true},
		{name: "an SBOM that no ImageScan names cannot be deleted", unresolved: true, sboms: fakeSBOMs{deleteErr: errors.New("read-only file system")},
			wantErr: "read-only file system", wantSBOM: true},
		{name: "the SBOM store cannot be read", sboms: fakeSBOMs{usageErr: errors.New("input/output error")},
			wantErr: "input/output error", wantSBOM: false},
		{name: "a running image's lastRunningTime cannot be renewed", running: true, funcs: interceptor.Funcs{SubResourcePatch: failStatus(forbidden)},
			wantErr: "renewing the lastRunningTime of ImageScan " + vigilv1alpha1.ImageScanName(digestOf("b")), wantScan: true, wantSBOM: true},
		{name: "a running image's ImageScan was deleted meanwhile", running: true, funcs: interceptor.Funcs{SubResourcePatch: failStatus(notFound)},
			wantScan: true, wantSBOM: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			digest := digestOf("b")
			scanDigest := digest
			if tc.unresolved {
				scanDigest = "" // its SBOM is one that no ImageScan names
			}
			scan := imageScan(scanDigest, now, 30*24*time.Hour, 8*24*time.Hour)
			objects := []client.Object{scan}
			if tc.running {
				objects = append(objects, runningPod(digest))
			}
			c := fakeClient(t, tc.funcs, objects...)
			sboms := &tc.sboms
			sboms.digests = map[string]bool{digest: true}
			collector := &Collector{Client: c, SBOMs: sboms, Retention: week}
			err := collector.Collect(t.Context(), now)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one that says %q", err, tc.wantErr)
			}
			getErr := c.Get(t.Context(), client.ObjectKeyFromObject(scan), &vigilv1alpha1.ImageScan{})
			if getErr != nil && !apierrors.IsNotFound(getErr) {
				t.Fatal(getErr)
			}
			if kept := getErr == nil; kept != tc.wantScan {
				t.Errorf("ImageScan kept: %t, want %t", kept, tc.wantScan)
			}
			if sboms.digests[digest] != tc.wantSBOM {
				t.Errorf("SBOM kept: %t, want %t", sboms.digests[digest], tc.wantSBOM)
			}
		})
	}
}

func TestWhatHappensWhileTheCollectorWorksKeepsItsSBOM(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	stopped, image, orphan := digestOf("b"), digestOf("n"), digestOf("o")
	tests := []struct {
		name string
		// stored are the SBOMs stored when the collection begins; meanwhile happens right
		// after the collector has listed the ImageScans.
		stored    []string
		meanwhile func(ctx context.Context, c client.Client, sboms *fakeSBOMs) error
	}{
		{
			name:   "a new image is recorded and scanned: its ImageScan is not in the list, its SBOM is stored after it",
			stored: []string{stopped, orphan},
			meanwhile: func(ctx context.Context, c client.Client, sboms *fakeSBOMs) error {
				if err := c.Create(ctx, imageScan(image, now, 0, -1)); err != nil {
					return err
				}
				sboms.digests[image] = true
				return nil
			},
		},
		{
			name:   "an image whose ImageScan was deleted by hand, leaving its SBOM, is recorded again",
			stored: []string{stopped, orphan, image},
			meanwhile: func(ctx context.Context, c client.Client, _ *fakeSBOMs) error {
				return c.Create(ctx, imageScan(image, now, 0, -1))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sboms := &fakeSBOMs{digests: map[string]bool{}}
			for _, digest := range tc.stored {
				sboms.digests[digest] = true
			}
			c := fakeClient(t, interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, options ...client.ListOption) error {
				if err := c.List(ctx, list, options...); err != nil {
					return err
				}
				if _, ok := list.(*vigilv1alpha1.ImageScanList); ok {
					return tc.meanwhile(ctx, c, sboms)
				}
				return nil
			}}, imageScan(stopped, now, 30*24*time.Hour, 8*24*time.Hour))
			collector := &Collector{Client: c, SBOMs: sboms, Retention: 7 * 24 * time.Hour}
			if err := collector.Collect(t.Context(), now); err != nil {
				t.Fatal(err)
			}
			if !sboms.digests[image] {
				t.Error("the image's SBOM was deleted as an orphan")
			}
			if sboms.digests[stopped] || sboms.digests[orphan] {
				t.Error("the SBOM of the collected image, or of no ImageScan, was kept")
			}
		})
	}
}

func TestTheCollectorCollectsEveryIntervalUntilTheManagerStops(t *testing.T) {
	tests := []struct {
		name string
		// list answers the Collector's listing of ImageScans; stop ends the Collector's context.
		list       func(ctx context.Context, c client.WithWatch, list client.ObjectList, stop func()) error
		wantErrors bool
		wantKept   bool
	}{
		{
			name: "an image that nothing runs is collected, and nothing is logged",
			list: func(ctx context.Context, c client.WithWatch, list client.ObjectList, _ func()) error {
				return c.List(ctx, list)
			},
		},
		{
			name: "each failed collection is logged, and the next interval tries again",
			list: func(context.Context, client.WithWatch, client.ObjectList, func()) error {
				return errors.New("connection refused")
			},
			wantErrors: true, wantKept: true,
		},
		{
			name: "a collection cut short by the manager's stop is not logged as a failure",
			list: func(ctx context.Context, _ client.WithWatch, _ client.ObjectList, stop func()) error {
				stop()
				return ctx.Err()
			},
			wantKept: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errorsLogged := &testlog.Errors{}
			ctx, stop := context.WithCancel(errorsLogged.Into(t.Context()))
			defer stop()
			var lists atomic.Int32
			scan := imageScan(digestOf("b"), time.Now(), 30*24*time.Hour, 8*24*time.Hour)
			c := fakeClient(t, interceptor.Funcs{List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, options ...client.ListOption) error {
				if _, ok := list.(*vigilv1alpha1.ImageScanList); !ok {
					return c.List(ctx, list, options...)
				}
				lists.Add(1)
				return tc.list(ctx, c, list, stop)
			}}, scan)
			collector := &Collector{Client: c, SBOMs: &fakeSBOMs{}, Retention: 7 * 24 * time.Hour, Interval: time.Millisecond}
			done := make(chan error, 1)
			go func() { done <- collector.Start(ctx) }()

			// Once the third collection has started, two have ended and said what they had to.
			deadline := time.Now().Add(30 * time.Second)
			for lists.Load() < 3 && ctx.Err() == nil {
				if time.Now().After(deadline) {
					t.Fatalf("%d collections in 30 s", lists.Load())
				}
				time.Sleep(time.Millisecond)
			}
			stop()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Start returned %v when the manager stopped", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the Collector did not stop with the manager")
			}
			logged := errorsLogged.Messages()
			if tc.wantErrors {
				if len(logged) < 2 || !strings.Contains(logged[0], `"msg"="Collecting unused images failed" "error"="listing ImageScans: connection refused"`) {
					t.Errorf("logged %q, want each failed collection", logged)
				}
			} else if len(logged) > 0 {
				t.Errorf("logged %q, want nothing", logged)
			}
			err := c.Get(context.Background(), client.ObjectKeyFromObject(scan), &vigilv1alpha1.ImageScan{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
			if kept := err == nil; kept != tc.wantKept {
				t.Errorf("ImageScan kept: %t, want %t", kept, tc.wantKept)
			}
		})
	}
}
