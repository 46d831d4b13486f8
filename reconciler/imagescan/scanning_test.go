package imagescan

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/pkg/metrics"
	"github.com/vigil-dev/vigil/reconciler/conflicts"
)

// newerReader answers Get with the object one write ahead of the cache's copy.
type newerReader struct{ client.Reader }

func (r newerReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := r.Reader.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	obj.SetResourceVersion(obj.GetResourceVersion() + "1")
	return nil
}

func TestAnEndedAttemptWhoseOutcomeTheCacheHasNotSeenIsLookedAtAgain(t *testing.T) {
	tests := []struct {
		name        string
		newer       bool
		wantPhase   vigilv1alpha1.ImageScanPhase
		wantRequeue time.Duration
	}{
		{name: "the API server has a newer copy: come back soon", newer: true, wantPhase: vigilv1alpha1.ImageScanScanning, wantRequeue: time.Second},
		{name: "the API server has the same copy: the outcome is lost", wantPhase: vigilv1alpha1.ImageScanPending},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scan := scanIn(vigilv1alpha1.ImageScanScanning, 1)
			r := newReconciler(t, &fakeExecutor{state: executor.Ended}, fakeStore{}, scan)
			if tc.newer {
				r.APIReader = newerReader{r.Client}
			}
			result, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: scan.Name}})
			if err != nil {
				t.Fatal(err)
			}
			got := &vigilv1alpha1.ImageScan{}
			if err := r.Client.Get(context.Background(), client.ObjectKeyFromObject(scan), got); err != nil {
				t.Fatal(err)
			}
			if got.Status.Phase != tc.wantPhase || result.RequeueAfter != tc.wantRequeue {
				t.Errorf("phase %q, requeue after %s; want %q and %s", got.Status.Phase, result.RequeueAfter, tc.wantPhase, tc.wantRequeue)
			}
		})
	}
}

func TestAnImageWithoutAValidReferenceFails(t *testing.T) {
	scan := scanIn("", 0, func(scan *vigilv1alpha1.ImageScan) {
		scan.Spec.References = []vigilv1alpha1.ImageReference{{Image: "Not A Reference", Namespace: "shop"}}
	})
	exec := &fakeExecutor{}
	r := newReconciler(t, exec, fakeStore{}, scan)
	r.Dispatcher.grants = map[string]grant{scan.Name: {at: time.Now()}}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: scan.Name}}); err != nil {
		t.Fatal(err)
	}
	got := &vigilv1alpha1.ImageScan{}
	if err := r.Client.Get(context.Background(), client.ObjectKeyFromObject(scan), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != vigilv1alpha1.ImageScanFailed || scannedCondition(got).Reason != ReasonScanFailed || len(exec.submitted) != 0 {
		t.Errorf("phase %q, Scanned %+v, submitted %v: want a failure without a scan", got.Status.Phase, scannedCondition(got), exec.submitted)
	}
}

func TestAFailureThatCannotBeWrittenIsReturned(t *testing.T) {
	scan := scanIn("", 0, func(scan *vigilv1alpha1.ImageScan) {
		scan.Spec.References = []vigilv1alpha1.ImageReference{{Image: "Not A Reference", Namespace: "shop"}}
	})
	r := newReconciler(t, &fakeExecutor{}, fakeStore{}, scan)
	r.Client = interceptor.NewClient(r.Client.(client.WithWatch), interceptor.Funcs{
		SubResourceUpdate: func(context.Context, client.Client, string, client.Object, ...client.SubResourceUpdateOption) error {
			return errors.New("the API server is unavailable")
		},
	})
	r.Dispatcher.grants = map[string]grant{scan.Name: {at: time.Now(), taken: false}}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: scan.Name}}); err == nil {
		t.Fatal("a failure that could not be written is not reported, so it would not be tried again")
	}
	if !r.Dispatcher.Take(scan.Name, scan.Status.Attempts+1) {
		t.Error("the slot was not kept for the next reconcile")
	}
}

func TestADeletedImageScanIsLeftAlone(t *testing.T) {
	now := metav1.Now()
	scan := scanIn("", 0, func(scan *vigilv1alpha1.ImageScan) {
		scan.DeletionTimestamp = &now
		scan.Finalizers = []string{"example.com/hold"}
	})
	exec := &fakeExecutor{}
	r := newReconciler(t, exec, fakeStore{}, scan)
	r.Dispatcher.grants = map[string]grant{scan.Name: {at: time.Now()}}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: scan.Name}}); err != nil {
		t.Fatal(err)
	}
	if len(exec.submitted) != 0 {
		t.Errorf("a scan of a deleted ImageScan was submitted: %v", exec.submitted)
	}
}

func TestTheScanOutcomeMetricLabel(t *testing.T) {
	tests := []struct {
		scan *vigilv1alpha1.ImageScan
		want metrics.ScanOutcome
	}{
		{scan: scanIn(vigilv1alpha1.ImageScanScanning, 1, withCondition(vigilv1alpha1.ConditionSBOMStored, metav1.ConditionTrue, ReasonStored)), want: metrics.ScanScanned},
		{scan: scanIn(vigilv1alpha1.ImageScanPending, 1), want: metrics.ScanRetried},
		{scan: scanIn(vigilv1alpha1.ImageScanTooLarge, 1), want: metrics.ScanTooLarge},
		{scan: scanIn(vigilv1alpha1.ImageScanFailed, 3), want: metrics.ScanFailed},
	}
	for _, tc := range tests {
		if got := scanOutcomeOf(tc.scan); got != tc.want {
			t.Errorf("%s: outcome %v, want %v", tc.scan.Status.Phase, got, tc.want)
		}
	}
}

func TestOneLine(t *testing.T) {
	tests := []struct {
		message string
		n       int
		want    string
	}{
		{message: "short", n: 5, want: "short"},
		{message: "longer", n: 5, want: "longe"},
		{message: "  a\nregistry\tsaid  ", n: 100, want: "a registry said"},
	}
	for _, tc := range tests {
		if got := oneLine(tc.message, tc.n); got != tc.want {
			t.Errorf("oneLine(%q, %d) = %q, want %q", tc.message, tc.n, got, tc.want)
		}
	}
	if got := oneLine(strings.Repeat("x", 2000), 1000); len(got) != 1000 {
		t.Errorf("a long message is cut to %d bytes, want 1000", len(got))
	}
}

// noCauses is an error that unwraps to no error at all.
type noCauses struct{}

func (noCauses) Error() string   { return "the scanner stopped" }
func (noCauses) Unwrap() []error { return nil }

func TestAFailureThatUnwrapsToNothingIsExplainedAsItself(t *testing.T) {
	reason, message, final := explainFailure(noCauses{})
	if reason != ReasonScanFailed || message != "the scanner stopped" || final {
		t.Errorf("explainFailure = %q, %q, final %v; want %q, the error's own words, to be tried again", reason, message, final, ReasonScanFailed)
	}
}

func TestAnAttemptWhoseWriteConflictedStartsOnTheNextReconcile(t *testing.T) {
	scan := scanIn(vigilv1alpha1.ImageScanPending, 0)
	exec := &fakeExecutor{}
	r := newReconciler(t, exec, fakeStore{}, scan)
	conflictsLeft := 1
	r.Client = interceptor.NewClient(r.Client.(client.WithWatch), interceptor.Funcs{
		SubResourceUpdate: func(ctx context.Context, c client.Client, subResource string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			if conflictsLeft > 0 {
				conflictsLeft--
				return apierrors.NewConflict(schema.GroupResource{Group: "vigil.dev", Resource: "imagescans"}, obj.GetName(), errors.New("the object has been modified"))
			}
			return c.SubResource(subResource).Update(ctx, obj, opts...)
		},
	})
	if err := r.Dispatcher.dispatch(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	request := ctrl.Request{NamespacedName: types.NamespacedName{Name: scan.Name}}
	if result, err := r.Reconcile(context.Background(), request); err != nil || result.RequeueAfter != conflicts.RetryAfter {
		t.Fatalf("a conflicting write of the attempt: requeue after %s, error %v; want %s and no error to log", result.RequeueAfter, err, conflicts.RetryAfter)
	}
	// The retry, well within the grant's lifetime: the slot is still this image's.
	if _, err := r.Reconcile(context.Background(), request); err != nil {
		t.Fatal(err)
	}
	got := &vigilv1alpha1.ImageScan{}
	if err := r.Client.Get(context.Background(), client.ObjectKeyFromObject(scan), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != vigilv1alpha1.ImageScanScanning || len(exec.submitted) != 1 {
		t.Errorf("after a conflicting write and a retry the image is %q with %d scans started; want it Scanning, started once", got.Status.Phase, len(exec.submitted))
	}
}

func TestAnAttemptIsCountedLostOnlyOnceItIsWrittenSo(t *testing.T) {
	// The executor no longer runs the attempt: its outcome was recorded, and this reconciler's
	// cached copy is behind. Its write conflicts, and nothing is counted or told as lost.
	scan := scanIn(vigilv1alpha1.ImageScanScanning, 1)
	r := newReconciler(t, &fakeExecutor{state: executor.Lost}, fakeStore{}, scan)
	r.Client = interceptor.NewClient(r.Client.(client.WithWatch), interceptor.Funcs{
		SubResourceUpdate: func(_ context.Context, _ client.Client, _ string, obj client.Object, _ ...client.SubResourceUpdateOption) error {
			return apierrors.NewConflict(schema.GroupResource{Group: "vigil.dev", Resource: "imagescans"}, obj.GetName(), errors.New("the object has been modified"))
		},
	})
	before := testutil.ToFloat64(scansLost)
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: scan.Name}}); err != nil {
		t.Fatal(err)
	}
	if lost := testutil.ToFloat64(scansLost) - before; lost != 0 {
		t.Errorf("%v attempts counted lost by a write that did not happen", lost)
	}
}
