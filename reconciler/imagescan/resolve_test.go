package imagescan

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/reconciler/conflicts"
)

// loopbackRegistry serves one random image as shop/api:1.4 on the loopback address and returns
// the registry's host:port and the image's digest.
func loopbackRegistry(t *testing.T) (string, string) {
	t.Helper()
	server := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(server.Close)
	host := strings.TrimPrefix(server.URL, "http://")
	image, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/shop/api:1.4", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, image); err != nil {
		t.Fatal(err)
	}
	digest, err := image.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return host, digest.String()
}

func TestResolvingARecordedReference(t *testing.T) {
	host, digest := loopbackRegistry(t)
	image := host + "/shop/api:1.4"
	missing := host + "/shop/gone:1"
	reference := func(image, namespace string) vigilv1alpha1.ImageReference {
		return vigilv1alpha1.ImageReference{Image: image, Namespace: namespace}
	}
	referenceScan := func(refs []vigilv1alpha1.ImageReference, mutate ...func(*vigilv1alpha1.ImageScan)) *vigilv1alpha1.ImageScan {
		scan := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: "ref-shop-api", Generation: 1},
			Spec: vigilv1alpha1.ImageScanSpec{References: refs}}
		for _, m := range mutate {
			m(scan)
		}
		return scan
	}
	failedAt := func(generation int64, attempts int32, phase vigilv1alpha1.ImageScanPhase) func(*vigilv1alpha1.ImageScan) {
		return func(scan *vigilv1alpha1.ImageScan) {
			scan.Status.Phase = phase
			scan.Status.Attempts = attempts
			meta.SetStatusCondition(&scan.Status.Conditions, metav1.Condition{Type: vigilv1alpha1.ConditionResolved,
				Status: metav1.ConditionFalse, Reason: "ImageNotFound", ObservedGeneration: generation})
		}
	}
	waiting := func(scan *vigilv1alpha1.ImageScan) {
		at := metav1.NewTime(time.Now())
		scan.Status.LastAttemptTime = &at
	}
	existing := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(digest)},
		Spec: vigilv1alpha1.ImageScanSpec{Digest: digest, References: []vigilv1alpha1.ImageReference{reference(image, "jobs")}}}

	tests := []struct {
		name          string
		scan          *vigilv1alpha1.ImageScan
		existing      bool
		wantResolved  []string // the namespaces of the digest's ImageScan's references
		wantPhase     vigilv1alpha1.ImageScanPhase
		wantAttempts  int32
		wantRequeue   time.Duration
		wantUntouched bool
	}{
		{name: "a new digest gets its ImageScan", scan: referenceScan([]vigilv1alpha1.ImageReference{reference(image, "shop")}),
			wantResolved: []string{"shop"}},
		{name: "an unreachable reference is skipped for the next", scan: referenceScan([]vigilv1alpha1.ImageReference{reference(missing, "shop"), reference(image, "shop")}),
			wantResolved: []string{"shop", "shop"}},
		{name: "a known digest gets the references", scan: referenceScan([]vigilv1alpha1.ImageReference{reference(image, "shop")}), existing: true,
			wantResolved: []string{"jobs", "shop"}},
		{name: "a known reference changes nothing", scan: referenceScan([]vigilv1alpha1.ImageReference{reference(image, "jobs")}), existing: true,
			wantResolved: []string{"jobs"}},
		{name: "a failure with attempts left waits its backoff", scan: referenceScan([]vigilv1alpha1.ImageReference{reference(missing, "shop")}),
			wantPhase: vigilv1alpha1.ImageScanPending, wantAttempts: 1, wantRequeue: time.Minute},
		{name: "a second failure waits twice as long", scan: referenceScan([]vigilv1alpha1.ImageReference{reference(missing, "shop")}, failedAt(1, 1, vigilv1alpha1.ImageScanPending)),
			wantPhase: vigilv1alpha1.ImageScanPending, wantAttempts: 2, wantRequeue: 2 * time.Minute},
		{name: "the last failure is final", scan: referenceScan([]vigilv1alpha1.ImageReference{reference(missing, "shop")}, failedAt(1, 2, vigilv1alpha1.ImageScanPending)),
			wantPhase: vigilv1alpha1.ImageScanFailed, wantAttempts: 3},
		{name: "new references start a fresh series", scan: referenceScan([]vigilv1alpha1.ImageReference{reference(missing, "shop")}, failedAt(1, 3, vigilv1alpha1.ImageScanFailed),
			func(scan *vigilv1alpha1.ImageScan) { scan.Generation = 2 }),
			wantPhase: vigilv1alpha1.ImageScanPending, wantAttempts: 1, wantRequeue: time.Minute},
		{name: "a final failure stays while the references are unchanged", scan: referenceScan([]vigilv1alpha1.ImageReference{reference(image, "shop")}, failedAt(1, 3, vigilv1alpha1.ImageScanFailed)),
			wantPhase: vigilv1alpha1.ImageScanFailed, wantAttempts: 3, wantUntouched: true},
		{name: "a retry waits out its backoff", scan: referenceScan([]vigilv1alpha1.ImageReference{reference(image, "shop")}, failedAt(1, 1, vigilv1alpha1.ImageScanPending), waiting),
			wantPhase: vigilv1alpha1.ImageScanPending, wantAttempts: 1, wantRequeue: time.Minute, wantUntouched: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objects := []client.Object{tc.scan}
			if tc.existing {
				objects = append(objects, existing.DeepCopy())
			}
			r := newReconciler(t, &fakeExecutor{}, fakeStore{}, objects...)
			r.Registry = sbom.Options{Registries: map[string]sbom.RegistryAccess{host: {PlainHTTP: true}}, Timeout: 10 * time.Second}
			result, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: tc.scan.Name}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			resolved := &vigilv1alpha1.ImageScan{}
			err = r.Client.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ImageScanName(digest)}, resolved)
			if tc.wantResolved != nil {
				if err != nil {
					t.Fatalf("the digest's ImageScan: %v", err)
				}
				var namespaces []string
				for _, ref := range resolved.Spec.References {
					namespaces = append(namespaces, ref.Namespace)
				}
				if resolved.Spec.Digest != digest || strings.Join(namespaces, ",") != strings.Join(tc.wantResolved, ",") {
					t.Errorf("the digest's ImageScan is %s with references in %v, want %s in %v", resolved.Spec.Digest, namespaces, digest, tc.wantResolved)
				}
				if err := r.Client.Get(ctx, client.ObjectKeyFromObject(tc.scan), &vigilv1alpha1.ImageScan{}); err == nil {
					t.Error("the resolved reference's own ImageScan is left")
				}
				return
			}
			if err == nil && !tc.existing {
				t.Errorf("a failed resolution made the digest's ImageScan %+v", resolved.Spec)
			}
			got := &vigilv1alpha1.ImageScan{}
			if err := r.Client.Get(ctx, client.ObjectKeyFromObject(tc.scan), got); err != nil {
				t.Fatal(err)
			}
			if got.Status.Phase != tc.wantPhase || got.Status.Attempts != tc.wantAttempts {
				t.Errorf("phase %q attempts %d, want %q and %d", got.Status.Phase, got.Status.Attempts, tc.wantPhase, tc.wantAttempts)
			}
			// A reconcile that waits asks to come back within the wait; one that failed asks
			// for exactly the backoff.
			if tc.wantUntouched {
				if result.RequeueAfter > tc.wantRequeue || (tc.wantRequeue > 0 && result.RequeueAfter <= 0) {
					t.Errorf("requeue after %s, want at most %s", result.RequeueAfter, tc.wantRequeue)
				}
				return
			}
			if result.RequeueAfter != tc.wantRequeue {
				t.Errorf("requeue after %s, want %s", result.RequeueAfter, tc.wantRequeue)
			}
			condition := meta.FindStatusCondition(got.Status.Conditions, vigilv1alpha1.ConditionResolved)
			if condition == nil || condition.Status != metav1.ConditionFalse || condition.Reason != sbom.ReasonImageNotFound || condition.ObservedGeneration != got.Generation {
				t.Errorf("Resolved condition %+v, want ImageNotFound for generation %d", condition, got.Generation)
			}
			if got.Status.LastAttemptTime == nil {
				t.Error("a failed resolution does not say when it was tried")
			}
		})
	}
}

func TestTheRetryBackoff(t *testing.T) {
	r := &Reconciler{RetryBackoff: time.Minute, MaxRetryBackoff: 5 * time.Minute}
	for _, tc := range []struct {
		attempts int32
		want     time.Duration
	}{{0, time.Minute}, {1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute}, {4, 5 * time.Minute}, {30, 5 * time.Minute}} {
		if got := r.backoff(tc.attempts); got != tc.want {
			t.Errorf("backoff after %d attempts is %s, want %s", tc.attempts, got, tc.want)
		}
	}
	now := time.Now()
	for _, tc := range []struct {
		name     string
		attempts int32
		last     *time.Time
		want     time.Duration
	}{
		{name: "never tried", attempts: 0},
		{name: "no attempt time (lost attempts go again at once)", attempts: 2},
		{name: "a first attempt's retry", attempts: 1, last: &now, want: time.Minute},
		{name: "the wait shrinks as time passes", attempts: 2, last: ptrTo(now.Add(-30 * time.Second)), want: 90 * time.Second},
		{name: "a wait that is over", attempts: 1, last: ptrTo(now.Add(-2 * time.Minute)), want: -time.Minute},
		{name: "attempts reset", attempts: 0, last: &now},
	} {
		scan := &vigilv1alpha1.ImageScan{Status: vigilv1alpha1.ImageScanStatus{Attempts: tc.attempts}}
		if tc.last != nil {
			at := metav1.NewTime(*tc.last)
			scan.Status.LastAttemptTime = &at
		}
		got := r.retryWait(scan, now)
		if got != tc.want && (got > tc.want+time.Second || got < tc.want-time.Second) {
			t.Errorf("%s: wait %s, want %s", tc.name, got, tc.want)
		}
		if due := r.due(scan, now); due != (tc.want <= 0) {
			t.Errorf("%s: due %v with a wait of %s", tc.name, due, tc.want)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestANamespaceWhoseRegistryNeverAnswersHoldsTwoResolutionsAtMost(t *testing.T) {
	// A registry that takes every request and answers none until the test ends.
	requests := make(chan struct{}, 16)
	release := make(chan struct{})
	silent := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		requests <- struct{}{}
		<-release
	}))
	defer silent.Close()
	defer close(release)
	silentHost := strings.TrimPrefix(silent.URL, "http://")
	host, digest := loopbackRegistry(t)

	reference := func(name, image, namespace string) *vigilv1alpha1.ImageScan {
		return &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1},
			Spec: vigilv1alpha1.ImageScanSpec{References: []vigilv1alpha1.ImageReference{{Image: image, Namespace: namespace}}}}
	}
	stuck := []*vigilv1alpha1.ImageScan{
		reference("ref-stuck-0", silentHost+"/stuck/app-0:1", "stuck"),
		reference("ref-stuck-1", silentHost+"/stuck/app-1:1", "stuck"),
		reference("ref-stuck-2", silentHost+"/stuck/app-2:1", "stuck"),
	}
	shop := reference("ref-shop-api", host+"/shop/api:1.4", "shop")
	r := newReconciler(t, &fakeExecutor{}, fakeStore{}, stuck[0], stuck[1], stuck[2], shop)
	r.Registry = sbom.Options{Registries: map[string]sbom.RegistryAccess{host: {PlainHTTP: true}, silentHost: {PlainHTTP: true}}, Timeout: time.Minute}
	reconcile := func(scan *vigilv1alpha1.ImageScan) (ctrl.Result, error) {
		return r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: scan.Name}})
	}

	// Two of the namespace's references wait on its registry.
	for _, scan := range stuck[:2] {
		go func() { _, _ = reconcile(scan) }()
		select {
		case <-requests:
		case <-time.After(30 * time.Second):
			t.Fatal("the silent registry was not asked")
		}
	}
	// A third waits its turn without asking the registry.
	result, err := reconcile(stuck[2])
	if err != nil || result.RequeueAfter != resolveBusyWait {
		t.Errorf("the third reference of a namespace at its bound: requeue after %s, error %v; want %s", result.RequeueAfter, err, resolveBusyWait)
	}
	select {
	case <-requests:
		t.Error("a third resolution of the namespace asked its registry")
	default:
	}
	// Another namespace's reference is resolved meanwhile.
	if _, err := reconcile(shop); err != nil {
		t.Fatal(err)
	}
	if err := r.Client.Get(context.Background(), client.ObjectKey{Name: vigilv1alpha1.ImageScanName(digest)}, &vigilv1alpha1.ImageScan{}); err != nil {
		t.Errorf("another namespace's reference was not resolved: %v", err)
	}
}

func TestAResolutionThatRacesAnotherWriterLosesNoReference(t *testing.T) {
	host, digest := loopbackRegistry(t)
	image := host + "/shop/api:1.4"
	tests := []struct {
		name string
		// meanwhile is what another writer does while the reference is resolved: c writes to
		// the API server, scan is the reference's ImageScan.
		meanwhile      func(ctx context.Context, c client.Client, scan *vigilv1alpha1.ImageScan) error
		on             string   // the call of the resolution that the other writer goes before
		existing       []string // namespaces of the references of the digest's ImageScan, when it exists
		wantRequeue    time.Duration
		wantNamespaces []string // of the digest's ImageScan's references
		wantReference  bool     // the reference's own ImageScan stays
		wantAPIReads   int      // reads from the API server rather than the cache
	}{
		{
			name:           "no other writer: the cache is read, not the API server",
			wantNamespaces: []string{"shop"},
		},
		{
			name: "another reference of the digest created its ImageScan: the references are added to it",
			on:   "create",
			meanwhile: func(ctx context.Context, c client.Client, _ *vigilv1alpha1.ImageScan) error {
				return c.Create(ctx, &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(digest)},
					Spec: vigilv1alpha1.ImageScanSpec{Digest: digest, References: []vigilv1alpha1.ImageReference{{Image: image, Namespace: "jobs"}}}})
			},
			wantNamespaces: []string{"jobs", "shop"}, wantAPIReads: 1,
		},
		{
			name: "the digest's ImageScan in the cache was deleted meanwhile: it is created again",
			on:   "update",
			meanwhile: func(ctx context.Context, c client.Client, _ *vigilv1alpha1.ImageScan) error {
				return c.Delete(ctx, &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(digest)}})
			},
			existing:       []string{"jobs"},
			wantNamespaces: []string{"shop"}, wantAPIReads: 1,
		},
		{
			name:           "the digest's ImageScan holds the references already: the API server confirms it",
			existing:       []string{"shop"},
			wantNamespaces: []string{"shop"}, wantAPIReads: 1,
		},
		{
			name: "the cache's copy holds the references already but was deleted meanwhile: it is created again",
			on:   "cached read",
			meanwhile: func(ctx context.Context, c client.Client, _ *vigilv1alpha1.ImageScan) error {
				return c.Delete(ctx, &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(digest)}})
			},
			existing:       []string{"shop"},
			wantNamespaces: []string{"shop"}, wantAPIReads: 1,
		},
		{
			name: "a reference was recorded on it meanwhile: it is not deleted with it",
			on:   "delete",
			meanwhile: func(ctx context.Context, c client.Client, scan *vigilv1alpha1.ImageScan) error {
				fresh := &vigilv1alpha1.ImageScan{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(scan), fresh); err != nil {
					return err
				}
				fresh.Spec.AddReference(vigilv1alpha1.ImageReference{Image: image, Namespace: "web"})
				return c.Update(ctx, fresh)
			},
			wantRequeue: conflicts.RetryAfter, wantNamespaces: []string{"shop"}, wantReference: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scan := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: "ref-shop-api", Generation: 1},
				Spec: vigilv1alpha1.ImageScanSpec{References: []vigilv1alpha1.ImageReference{{Image: image, Namespace: "shop"}}}}
			objects := []client.Object{scan}
			if tc.existing != nil {
				existing := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(digest)},
					Spec: vigilv1alpha1.ImageScanSpec{Digest: digest}}
				for _, namespace := range tc.existing {
					existing.Spec.AddReference(vigilv1alpha1.ImageReference{Image: image, Namespace: namespace})
				}
				objects = append(objects, existing)
			}
			r := newReconciler(t, &fakeExecutor{}, fakeStore{}, objects...)
			once := false
			before := func(ctx context.Context, c client.Client, call string) error {
				if call != tc.on || once {
					return nil
				}
				once = true
				return tc.meanwhile(ctx, c, scan)
			}
			r.Client = interceptor.NewClient(r.Client.(client.WithWatch), interceptor.Funcs{
				Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, options ...client.GetOption) error {
					if err := c.Get(ctx, key, obj, options...); err != nil || key.Name != vigilv1alpha1.ImageScanName(digest) {
						return err
					}
					return before(ctx, c, "cached read") // the copy read stays as it was
				},
				Create: func(ctx context.Context, c client.WithWatch, obj client.Object, options ...client.CreateOption) error {
					if err := before(ctx, c, "create"); err != nil {
						return err
					}
					return c.Create(ctx, obj, options...)
				},
				Update: func(ctx context.Context, c client.WithWatch, obj client.Object, options ...client.UpdateOption) error {
					if err := before(ctx, c, "update"); err != nil {
						return err
					}
					return c.Update(ctx, obj, options...)
				},
				Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, options ...client.DeleteOption) error {
					if err := before(ctx, c, "delete"); err != nil {
						return err
					}
					return c.Delete(ctx, obj, options...)
				},
			})
			apiReads := 0
			r.APIReader = interceptor.NewClient(r.Client.(client.WithWatch), interceptor.Funcs{
				Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, options ...client.GetOption) error {
					apiReads++
					return c.Get(ctx, key, obj, options...)
				},
			})
			r.Registry = sbom.Options{Registries: map[string]sbom.RegistryAccess{host: {PlainHTTP: true}}, Timeout: 10 * time.Second}
			result, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: scan.Name}})
			if err != nil || result.RequeueAfter != tc.wantRequeue {
				t.Fatalf("requeue after %s, error %v; want %s and no error", result.RequeueAfter, err, tc.wantRequeue)
			}
			resolved := &vigilv1alpha1.ImageScan{}
			if err := r.Client.Get(context.Background(), client.ObjectKey{Name: vigilv1alpha1.ImageScanName(digest)}, resolved); err != nil {
				t.Fatal(err)
			}
			var namespaces []string
			for _, reference := range resolved.Spec.References {
				namespaces = append(namespaces, reference.Namespace)
			}
			if !slices.Equal(namespaces, tc.wantNamespaces) {
				t.Errorf("the digest's ImageScan has references in %v, want %v", namespaces, tc.wantNamespaces)
			}
			err = r.Client.Get(context.Background(), client.ObjectKeyFromObject(scan), &vigilv1alpha1.ImageScan{})
			if kept := err == nil; kept != tc.wantReference {
				t.Errorf("the reference's own ImageScan kept: %t, want %t", kept, tc.wantReference)
			}
			if apiReads != tc.wantAPIReads {
				t.Errorf("%d reads from the API server, want %d", apiReads, tc.wantAPIReads)
			}
		})
	}
}
