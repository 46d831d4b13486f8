package imagescan

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/test/testlog"
)

// listings wraps reader so that it counts its List calls and fails them while failing is set.
func listings(reader client.Reader, lists *atomic.Int32, failing *atomic.Bool) client.Reader {
	return interceptor.NewClient(reader.(client.WithWatch), interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			lists.Add(1)
			if failing.Load() {
				return errors.New("the cache is not synced")
			}
			return c.List(ctx, list, opts...)
		},
	})
}

// eventually fails t unless condition holds within limit.
func eventually(t *testing.T, limit time.Duration, what string, condition func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !condition() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run starts start in the background and returns a function that stops it and fails t unless it
// returned nil at once.
func run(t *testing.T, ctx context.Context, start func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- start(ctx) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stopping: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("did not stop when its context ended")
		}
	}
}

func TestTheDispatcherLooksAtOnceAndWhenTriggeredAndSaysWhenItCannot(t *testing.T) {
	r := newReconciler(t, &fakeExecutor{}, fakeStore{}, scanIn(vigilv1alpha1.ImageScanPending, 0))
	var lists atomic.Int32
	var failing atomic.Bool
	d := r.Dispatcher
	d.Reader = listings(d.Reader, &lists, &failing)
	started := make(chan string, 10)
	d.start = func(name string) { started <- name }
	var log testlog.Errors
	stop := run(t, log.Into(t.Context()), d.Start)
	defer stop()

	select {
	case name := <-started:
		if name != vigilv1alpha1.ImageScanName(testDigest) {
			t.Errorf("started %s", name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the queued scan was not started when the dispatcher started")
	}
	// A trigger looks again well before the next tick (two seconds): one round lists twice.
	before := lists.Load()
	d.Trigger()
	eventually(t, 1500*time.Millisecond, "a round after the trigger", func() bool { return lists.Load() >= before+2 })
	if n := len(log.Messages()); n != 0 {
		t.Errorf("%d errors logged by rounds that succeeded", n)
	}

	failing.Store(true)
	d.Trigger()
	eventually(t, 5*time.Second, "the failed round logged", func() bool { return len(log.Messages()) > 0 })
}

func TestTheRematcherLooksAtOnceAndWhenTheDatabaseChangesAndSaysWhenItCannot(t *testing.T) {
	r := newReconciler(t, &fakeExecutor{}, fakeStore{})
	r.Database = fixedDatabase{built: time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)}
	var lists atomic.Int32
	var failing atomic.Bool
	rematcher := NewRematcher(r, listings(r.Client, &lists, &failing))
	var log testlog.Errors
	stop := run(t, log.Into(t.Context()), rematcher.Start)
	defer stop()

	eventually(t, 5*time.Second, "a look at the stored SBOMs when it started", func() bool { return lists.Load() > 0 })
	if n := len(log.Messages()); n != 0 {
		t.Errorf("%d errors logged by a look that succeeded", n)
	}
	// The next tick is a minute away: only the database change can make it look again.
	before := lists.Load()
	failing.Store(true)
	rematcher.DatabaseChanged()
	eventually(t, 5*time.Second, "a look after the database changed", func() bool { return lists.Load() > before })
	eventually(t, 5*time.Second, "the failed look logged", func() bool { return len(log.Messages()) > 0 })
}

func TestTheRematcherSaysNothingOfAFailureCausedByItsStop(t *testing.T) {
	r := newReconciler(t, &fakeExecutor{}, fakeStore{})
	r.Database = fixedDatabase{built: time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)}
	var lists atomic.Int32
	var failing atomic.Bool
	failing.Store(true)
	rematcher := NewRematcher(r, listings(r.Client, &lists, &failing))
	var log testlog.Errors
	ctx, cancel := context.WithCancel(log.Into(t.Context()))
	cancel()
	if err := rematcher.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if lists.Load() == 0 {
		t.Fatal("it did not look once before stopping")
	}
	if n := len(log.Messages()); n != 0 {
		t.Errorf("%d errors logged for a look cut short by the stop", n)
	}
}

func TestAScanJobIsMappedToTheImageScanOfItsDigest(t *testing.T) {
	job := func(annotations map[string]string) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: "vigil-scan-1", Annotations: annotations}}
	}
	if got := scanOfJob(t.Context(), job(map[string]string{executor.DigestAnnotation: testDigest})); len(got) != 1 ||
		got[0] != (reconcile.Request{NamespacedName: types.NamespacedName{Name: vigilv1alpha1.ImageScanName(testDigest)}}) {
		t.Errorf("a scan Job maps to %v", got)
	}
	if got := scanOfJob(t.Context(), job(map[string]string{"app": "backup"})); len(got) != 0 {
		t.Errorf("another Job maps to %v", got)
	}
}

func TestTheReconcilerSetsUpWithAManager(t *testing.T) {
	for _, watchJobs := range []bool{false, true} {
		// Nothing is started: the API server's address is never dialled.
		mgr, err := ctrl.NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, ctrl.Options{
			Scheme: newScheme(t), Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
			Controller: config.Controller{SkipNameValidation: ptr.To(true)}, // one controller per manager, the same name twice
		})
		if err != nil {
			t.Fatal(err)
		}
		r := newReconciler(t, &fakeExecutor{}, fakeStore{})
		if err := r.SetupWithManager(mgr, watchJobs); err != nil {
			t.Errorf("watching Jobs %v: %v", watchJobs, err)
		}
	}
}

func TestTheDispatcherGathersABurstOfTriggersIntoOneRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newReconciler(t, &fakeExecutor{}, fakeStore{}, scanIn(vigilv1alpha1.ImageScanPending, 0))
		var lists atomic.Int32
		var failing atomic.Bool
		d := r.Dispatcher
		d.Reader = listings(d.Reader, &lists, &failing)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() { _ = d.Start(ctx) }()
		synctest.Wait() // the first round is done; the dispatcher waits
		before := lists.Load()
		d.Trigger()
		synctest.Wait()
		if lists.Load() != before {
			t.Fatal("a round ran at once on a trigger, not after gathering the triggers of its burst")
		}
		d.Trigger() // a trigger within the burst: the same round
		time.Sleep(50 * time.Millisecond)
		synctest.Wait()
		if rounds := (lists.Load() - before) / 2; rounds != 1 {
			t.Errorf("%d rounds 50 ms after the first trigger, want 1", rounds)
		}
	})
}
