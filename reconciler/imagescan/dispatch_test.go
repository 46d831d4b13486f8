package imagescan

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

func TestTheDispatcherStartsQueuedScansUpToItsBound(t *testing.T) {
	now := time.Now()
	scan := func(name string, phase vigilv1alpha1.ImageScanPhase, age time.Duration) client.Object {
		s := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(now.Add(-age))},
			Spec:   vigilv1alpha1.ImageScanSpec{Digest: "sha256:" + name, References: []vigilv1alpha1.ImageReference{{Image: name, Namespace: "shop"}}},
			Status: vigilv1alpha1.ImageScanStatus{Phase: phase}}
		return s
	}
	r := newReconciler(t, &fakeExecutor{}, fakeStore{},
		scan("running", vigilv1alpha1.ImageScanScanning, time.Hour),
		scan("oldest", vigilv1alpha1.ImageScanPending, 3*time.Minute),
		scan("older", vigilv1alpha1.ImageScanPending, 2*time.Minute),
		scan("newest", "", time.Minute),
		scan("scanned", vigilv1alpha1.ImageScanScanned, 4*time.Minute),
	)
	var started []string
	d := r.Dispatcher
	d.Concurrency = 3
	d.start = func(name string) { started = append(started, name) }
	if err := d.dispatch(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(started, []string{"oldest", "older"}) {
		t.Errorf("started %v, want the two oldest queued scans beside the one running", started)
	}
	started = nil
	if err := d.dispatch(context.Background(), now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if len(started) != 0 {
		t.Errorf("started %v while the granted scans have not started yet", started)
	}
	// A grant that is never taken expires, and its slot goes to the next scan.
	if err := d.dispatch(context.Background(), now.Add(grantTTL+time.Second)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(started, []string{"oldest", "older"}) {
		t.Errorf("after the grants expired, started %v, want them granted again", started)
	}
}

func TestAnImageNeverScannedGoesBeforeAnOlderOneScannedAgain(t *testing.T) {
	now := time.Now()
	rescan := vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: "scanned-before", CreationTimestamp: metav1.NewTime(now.Add(-time.Hour))}}
	withFindings(&rescan)
	first := vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: "never-scanned", CreationTimestamp: metav1.NewTime(now)}}
	for _, pending := range [][]vigilv1alpha1.ImageScan{{rescan, first}, {first, rescan}} {
		d := &Dispatcher{Concurrency: 1, Due: func(*vigilv1alpha1.ImageScan, time.Time) bool { return true }}
		if chosen := d.choose(nil, pending, now); !slices.Equal(chosen, []string{"never-scanned"}) {
			t.Errorf("queued %s then %s: granted %v, want the image never scanned", pending[0].Name, pending[1].Name, chosen)
		}
	}
}

func TestAmongNamespacesEquallyBusyTheOldestImageGoesFirst(t *testing.T) {
	now := time.Now()
	scan := func(name, namespace string, age time.Duration) vigilv1alpha1.ImageScan {
		return queuedScan(name, namespace, now.Add(-age))
	}
	pending := []vigilv1alpha1.ImageScan{scan("shop-new", "shop", time.Minute), scan("jobs-old", "jobs", time.Hour), scan("web-newest", "web", time.Second)}
	d := &Dispatcher{Concurrency: 1, Due: func(*vigilv1alpha1.ImageScan, time.Time) bool { return true }}
	if chosen := d.choose(nil, pending, now); !slices.Equal(chosen, []string{"jobs-old"}) {
		t.Errorf("granted %v, want the oldest image of the namespaces with nothing in flight", chosen)
	}
	// More free slots than images waiting: every image is granted one.
	d = &Dispatcher{Concurrency: 5, Due: func(*vigilv1alpha1.ImageScan, time.Time) bool { return true }}
	if chosen := d.choose(nil, pending, now); !slices.Equal(chosen, []string{"jobs-old", "shop-new", "web-newest"}) {
		t.Errorf("granted %v with 5 free slots, want all three, oldest first", chosen)
	}
}

func TestAGrantIsHeldForItsWholeTimeToLive(t *testing.T) {
	now := time.Now()
	pending := []vigilv1alpha1.ImageScan{{ObjectMeta: metav1.ObjectMeta{Name: "granted"}}, {ObjectMeta: metav1.ObjectMeta{Name: "waiting"}}}
	d := &Dispatcher{Concurrency: 1, Due: func(*vigilv1alpha1.ImageScan, time.Time) bool { return true }}
	if chosen := d.choose(nil, pending, now); !slices.Equal(chosen, []string{"granted"}) {
		t.Fatalf("granted %v", chosen)
	}
	if chosen := d.choose(nil, pending, now.Add(grantTTL)); len(chosen) != 0 {
		t.Errorf("granted %v at exactly the grant's time to live, while it still holds the slot", chosen)
	}
	if chosen := d.choose(nil, pending, now.Add(grantTTL+time.Nanosecond)); !slices.Equal(chosen, []string{"granted"}) {
		t.Errorf("granted %v once the grant expired, want it granted again first", chosen)
	}
}

func TestGrantsOfOneRoundCountAsInFlightForTheNext(t *testing.T) {
	now := time.Now()
	scan := func(name, namespace string, age time.Duration) vigilv1alpha1.ImageScan {
		return queuedScan(name, namespace, now.Add(-age))
	}
	pending := []vigilv1alpha1.ImageScan{scan("shop-a", "shop", 3*time.Hour), scan("shop-b", "shop", 2*time.Hour), scan("jobs-c", "jobs", time.Hour)}
	d := &Dispatcher{Concurrency: 2, Due: func(*vigilv1alpha1.ImageScan, time.Time) bool { return true }}
	if chosen := d.choose(nil, pending, now); !slices.Equal(chosen, []string{"shop-a", "jobs-c"}) {
		t.Errorf("granted %v, want shop's oldest, then jobs' (shop has one granted already)", chosen)
	}
}

// queuedScan is a first scan of image name, recorded at created for a pod in namespace.
func queuedScan(name, namespace string, created time.Time) vigilv1alpha1.ImageScan {
	s := vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)}}
	s.Spec.References = []vigilv1alpha1.ImageReference{{Image: name, Namespace: namespace}}
	return s
}

func TestASlotIsFreeAgainOnceItsAttemptIsBackInPending(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name string
		// taken says whether the granted image's reconcile took the grant (for attempt 1);
		// attempts and due are what the cache shows of it at the next round.
		taken    bool
		attempts int32
		due      bool
		// recreated: it was deleted and recorded again under its name (another UID).
		recreated bool
		want      []string
	}{
		{name: "granted, not started yet: the slot stays its own", taken: false, attempts: 0, due: true, want: nil},
		{name: "started, the cache not caught up yet: the scan is in flight, the slot stays its own", taken: true, attempts: 0, due: true, want: nil},
		{name: "its attempt failed and waits to retry: the slot goes to the next image", taken: true, attempts: 1, due: false, want: []string{"waiting"}},
		{name: "its attempt was lost, to be tried again at once: the slot goes to it again", taken: true, attempts: 1, due: true, want: []string{"granted"}},
		{name: "its ImageScan was deleted and recorded again: the new one is granted at once", taken: true, attempts: 0, due: true, recreated: true, want: []string{"granted"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			granted := queuedScan("granted", "shop", now.Add(-time.Hour))
			waiting := queuedScan("waiting", "shop", now.Add(-time.Minute))
			d := &Dispatcher{Concurrency: 1, Due: func(scan *vigilv1alpha1.ImageScan, _ time.Time) bool {
				return scan.Name != "granted" || scan.Status.Attempts == 0 || tc.due
			}}
			if chosen := d.choose(nil, []vigilv1alpha1.ImageScan{granted, waiting}, now); !slices.Equal(chosen, []string{"granted"}) {
				t.Fatalf("granted %v", chosen)
			}
			if tc.taken && !d.Take("granted", 1) {
				t.Fatal("the grant could not be taken")
			}
			granted.Status.Attempts = tc.attempts
			if tc.recreated {
				granted.UID = "recorded-again"
			}
			chosen := d.choose(nil, []vigilv1alpha1.ImageScan{granted, waiting}, now.Add(time.Second))
			if !slices.Equal(chosen, tc.want) {
				t.Errorf("granted %v, want %v", chosen, tc.want)
			}
			if slices.Contains(tc.want, "granted") && !d.Take("granted", tc.attempts+1) {
				t.Error("the image granted again could not take the grant for its next attempt")
			}
		})
	}
}
