package imagescan

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/anchore/grype/grype/vulnerability/mock"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/index"
	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/test/fixtures/sboms"
	"github.com/vigil-dev/vigil/test/testlog"
)

// unreadable is a store whose SBOM of digest cannot be read.
type unreadable struct {
	sbomStore
	digest string
}

func (u unreadable) Get(digest string) ([]byte, error) {
	if digest == u.digest {
		return nil, errors.New("reading the SBOM: input/output error")
	}
	return u.sbomStore.Get(digest)
}

// sbomStore holds SBOMs by digest.
type sbomStore map[string]string

func (s sbomStore) Has(digest string) bool { _, ok := s[digest]; return ok }
func (s sbomStore) Get(digest string) ([]byte, error) {
	if sbom, ok := s[digest]; ok {
		return []byte(sbom), nil
	}
	return nil, errors.New("not stored")
}

// fixedDatabase is a Database built at built, without vulnerabilities; unavailable makes
// Acquire fail, as it does while the database is swapped.
type fixedDatabase struct {
	built       time.Time
	unavailable bool
}

func (d fixedDatabase) Built() time.Time { return d.built }
func (d fixedDatabase) Acquire() (*match.Matcher, func(), error) {
	if d.unavailable {
		return nil, nil, errors.New("the database is being replaced")
	}
	return match.NewMatcher(mock.VulnerabilityProvider(), match.Database{SchemaVersion: "v6.1.3", Built: d.built}), func() {}, nil
}

func TestMatchingAStoredSBOM(t *testing.T) {
	built := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	stored := func(matchAttempts int32) *vigilv1alpha1.ImageScan {
		return scanIn(vigilv1alpha1.ImageScanScanning, 1, withCondition(vigilv1alpha1.ConditionSBOMStored, metav1.ConditionTrue, ReasonStored),
			func(scan *vigilv1alpha1.ImageScan) { scan.Status.MatchAttempts = matchAttempts })
	}
	tests := []struct {
		name              string
		scan              *vigilv1alpha1.ImageScan
		database          Database
		sbom              string
		wantPhase         vigilv1alpha1.ImageScanPhase
		wantReason        string // of the Scanned condition
		wantMatchAttempts int32
		wantRequeue       time.Duration
		wantEvent         string
	}{
		{name: "no database yet: it waits", scan: stored(0), database: noDatabase{}, sbom: sboms.OneDebianPackage,
			wantPhase: vigilv1alpha1.ImageScanScanning, wantReason: ReasonDatabaseNotReady, wantRequeue: 10 * time.Second},
		{name: "a match", scan: stored(0), database: fixedDatabase{built: built}, sbom: sboms.OneDebianPackage,
			wantPhase: vigilv1alpha1.ImageScanScanned, wantReason: ReasonMatched, wantEvent: "Normal Matched 0 vulnerabilities in 1 packages"},
		{name: "a match after two that never finished", scan: stored(maxMatchAttempts - 1), database: fixedDatabase{built: built}, sbom: sboms.OneDebianPackage,
			wantPhase: vigilv1alpha1.ImageScanScanned, wantReason: ReasonMatched, wantEvent: "Normal Matched"},
		{name: "too many matches that never finished: too large", scan: stored(maxMatchAttempts), database: fixedDatabase{built: built}, sbom: sboms.OneDebianPackage,
			wantPhase: vigilv1alpha1.ImageScanTooLarge, wantReason: ReasonMatchOutOfMemory, wantMatchAttempts: maxMatchAttempts},
		{name: "a database being replaced: it comes back, the match counted", scan: stored(0), database: fixedDatabase{built: built, unavailable: true}, sbom: sboms.OneDebianPackage,
			wantPhase: vigilv1alpha1.ImageScanScanning, wantMatchAttempts: 1, wantRequeue: 10 * time.Second},
		{name: "an SBOM that cannot be read fails the image", scan: stored(1), database: fixedDatabase{built: built}, sbom: "not\nan SBOM",
			wantPhase: vigilv1alpha1.ImageScanFailed, wantReason: ReasonMatchFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReconciler(t, &fakeExecutor{}, fakeStore{}, tc.scan)
			r.SBOMs = sbomStore{testDigest: tc.sbom}
			r.Database = tc.database
			recorder := events.NewFakeRecorder(10)
			r.Events = recorder
			result, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: tc.scan.Name}})
			if err != nil {
				t.Fatal(err)
			}
			if result.RequeueAfter != tc.wantRequeue {
				t.Errorf("requeue after %s, want %s", result.RequeueAfter, tc.wantRequeue)
			}
			got := &vigilv1alpha1.ImageScan{}
			if err := r.Client.Get(context.Background(), client.ObjectKeyFromObject(tc.scan), got); err != nil {
				t.Fatal(err)
			}
			if got.Status.Phase != tc.wantPhase || got.Status.MatchAttempts != tc.wantMatchAttempts {
				t.Errorf("phase %q with %d match attempts, want %q and %d", got.Status.Phase, got.Status.MatchAttempts, tc.wantPhase, tc.wantMatchAttempts)
			}
			condition := meta.FindStatusCondition(got.Status.Conditions, vigilv1alpha1.ConditionScanned)
			if tc.wantReason != "" && (condition == nil || condition.Reason != tc.wantReason) {
				t.Errorf("Scanned condition %+v, want reason %s", condition, tc.wantReason)
			}
			if condition != nil && strings.Contains(condition.Message, "\n") {
				t.Errorf("the condition's message is not one line: %q", condition.Message)
			}
			if tc.wantPhase == vigilv1alpha1.ImageScanScanned {
				if got.Status.SBOM == nil || got.Status.SBOM.Distro != "debian 12" || got.Status.SBOM.Packages != 1 {
					t.Errorf("SBOM summary %+v, want debian 12 with 1 package", got.Status.SBOM)
				}
				if got.Status.Database == nil || !got.Status.Database.Built.Time.Equal(built) || got.Status.MatchTime == nil {
					t.Errorf("database %+v, match time %v: want the database in use", got.Status.Database, got.Status.MatchTime)
				}
			}
			select {
			case event := <-recorder.Events:
				if tc.wantEvent == "" || !strings.HasPrefix(event, tc.wantEvent) {
					t.Errorf("event %q, want %q", event, tc.wantEvent)
				}
			default:
				if tc.wantEvent != "" {
					t.Errorf("no event, want %q", tc.wantEvent)
				}
			}
		})
	}
}

func TestAMatchWrittenWhileAnotherWriterChangesTheImageScan(t *testing.T) {
	built := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	renewed := metav1.NewTime(built.Add(time.Hour))
	tests := []struct {
		name string
		// meanwhile is what another writer does to the ImageScan while its SBOM is matched.
		meanwhile    func(scan *vigilv1alpha1.ImageScan)
		wantErr      bool
		wantPhase    vigilv1alpha1.ImageScanPhase
		wantAttempts int32 // match attempts left counted
	}{
		{name: "the collector renews its lastRunningTime: the match is written on the new copy, counted once",
			meanwhile: func(scan *vigilv1alpha1.ImageScan) { scan.Status.LastRunningTime = &renewed },
			wantPhase: vigilv1alpha1.ImageScanScanned, wantAttempts: 0},
		{name: "another attempt began meanwhile: the match is not written over it",
			meanwhile: func(scan *vigilv1alpha1.ImageScan) { scan.Status.Attempts = 2 },
			wantErr:   true, wantPhase: vigilv1alpha1.ImageScanScanning, wantAttempts: 1},
		{name: "another database's match was written meanwhile: it is not written over",
			meanwhile: func(scan *vigilv1alpha1.ImageScan) {
				scan.Status.Database = &vigilv1alpha1.DatabaseVersion{SchemaVersion: "v6.1.3", Built: metav1.NewTime(built.Add(24 * time.Hour))}
			},
			wantErr: true, wantPhase: vigilv1alpha1.ImageScanScanning, wantAttempts: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scan := scanIn(vigilv1alpha1.ImageScanScanning, 1, withCondition(vigilv1alpha1.ConditionSBOMStored, metav1.ConditionTrue, ReasonStored))
			r := newReconciler(t, &fakeExecutor{}, fakeStore{}, scan)
			writes := 0
			r.Client = interceptor.NewClient(r.Client.(client.WithWatch), interceptor.Funcs{
				SubResourceUpdate: func(ctx context.Context, c client.Client, subResource string, obj client.Object, options ...client.SubResourceUpdateOption) error {
					writes++
					if writes == 2 { // the match's result, after its attempt was counted
						other := &vigilv1alpha1.ImageScan{}
						if err := c.Get(ctx, client.ObjectKeyFromObject(obj), other); err != nil {
							return err
						}
						tc.meanwhile(other)
						if err := c.Status().Update(ctx, other); err != nil {
							return err
						}
					}
					return c.Status().Update(ctx, obj, options...)
				},
			})
			r.APIReader = r.Client
			r.SBOMs = sbomStore{testDigest: sboms.OneDebianPackage}
			r.Database = fixedDatabase{built: built}
			_, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: scan.Name}})
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want one: %t", err, tc.wantErr)
			}
			got := &vigilv1alpha1.ImageScan{}
			if err := r.Client.Get(context.Background(), client.ObjectKeyFromObject(scan), got); err != nil {
				t.Fatal(err)
			}
			if got.Status.Phase != tc.wantPhase || got.Status.MatchAttempts != tc.wantAttempts {
				t.Errorf("phase %q with %d match attempts counted, want %q and %d", got.Status.Phase, got.Status.MatchAttempts, tc.wantPhase, tc.wantAttempts)
			}
			if !tc.wantErr && !got.Status.LastRunningTime.Equal(&renewed) {
				t.Errorf("lastRunningTime %v: the other writer's change was lost", got.Status.LastRunningTime)
			}
		})
	}
}

func TestANewDatabaseMatchesEveryScannedImageAgain(t *testing.T) {
	old := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	current := old.Add(24 * time.Hour)
	scanned := func(digestChar string, built time.Time, withDatabase bool) *vigilv1alpha1.ImageScan {
		digest := "sha256:" + strings.Repeat(digestChar, 64)
		scan := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(digest), Generation: 1},
			Spec: vigilv1alpha1.ImageScanSpec{Digest: digest, References: []vigilv1alpha1.ImageReference{{Image: "registry.example/app:" + digestChar, Namespace: "shop"}}},
			Status: vigilv1alpha1.ImageScanStatus{Phase: vigilv1alpha1.ImageScanScanned, Attempts: 1,
				Vulnerabilities: []vigilv1alpha1.ImageVulnerability{{ID: "CVE-2021-44228", Severity: vigilv1alpha1.SeverityCritical}}}}
		if withDatabase {
			scan.Status.Database = &vigilv1alpha1.DatabaseVersion{SchemaVersion: "v6.1.3", Built: metav1.NewTime(built)}
		}
		meta.SetStatusCondition(&scan.Status.Conditions, metav1.Condition{Type: vigilv1alpha1.ConditionSBOMStored, Status: metav1.ConditionTrue, Reason: ReasonStored, ObservedGeneration: 1})
		return scan
	}
	stale := scanned("a", old, true)
	noDatabaseYet := scanned("b", old, false)
	fresh := scanned("e", current, true)
	lost := scanned("1", old, true) // its SBOM is not in this replica's store; looked at first (by name)
	pending := scanIn(vigilv1alpha1.ImageScanPending, 0)

	c := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(stale, noDatabaseYet, fresh, lost, pending).
		WithStatusSubresource(&vigilv1alpha1.ImageScan{}).
		WithIndex(&vigilv1alpha1.ImageScan{}, index.ImageScanPhase, func(o client.Object) []string {
			return []string{index.PhaseOf(o.(*vigilv1alpha1.ImageScan))}
		}).
		WithIndex(&corev1.Pod{}, index.PodRunningDigest, func(o client.Object) []string { return index.RunningDigests(o.(*corev1.Pod)) }).
		Build()
	r := newReconciler(t, &fakeExecutor{}, fakeStore{})
	r.Client, r.APIReader, r.Dispatcher.Reader = c, c, c
	r.Database = fixedDatabase{built: current}
	r.SBOMs = sbomStore{stale.Spec.Digest: sboms.OneDebianPackage, noDatabaseYet.Spec.Digest: sboms.OneDebianPackage, fresh.Spec.Digest: sboms.OneDebianPackage}
	get := func(scan *vigilv1alpha1.ImageScan) *vigilv1alpha1.ImageScan {
		got := &vigilv1alpha1.ImageScan{}
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(scan), got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	freshVersion := get(fresh).ResourceVersion
	rematcher := NewRematcher(r, c)
	var log testlog.Errors
	rescansBefore := testutil.ToFloat64(rescans)
	if err := rematcher.rematch(log.Into(context.Background())); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(rescans) - rescansBefore; n != 1 {
		t.Errorf("%v scans again counted, want the one whose SBOM this replica lacks", n)
	}
	if len(r.Dispatcher.wake) != 1 {
		t.Error("the dispatcher was not asked to look for a slot for the image to scan again")
	}
	if pending := testutil.ToFloat64(rematchesPending); pending != 0 {
		t.Errorf("%v re-matches pending once every one is done", pending)
	}
	if logged := log.Messages(); len(logged) != 0 {
		t.Errorf("errors logged: %q", logged)
	}

	for _, scan := range []*vigilv1alpha1.ImageScan{stale, noDatabaseYet} {
		got := get(scan)
		if got.Status.Phase != vigilv1alpha1.ImageScanScanned || got.Status.Database == nil || !got.Status.Database.Built.Time.Equal(current) {
			t.Errorf("%s: phase %s, database %+v; want matched against the database of %s", scan.Spec.References[0].Image, got.Status.Phase, got.Status.Database, current)
		}
	}
	if got := get(fresh); got.ResourceVersion != freshVersion || len(got.Status.Vulnerabilities) != 1 || got.Status.Phase != vigilv1alpha1.ImageScanScanned {
		t.Errorf("an image matched against the current database changed: %+v", got.Status)
	}
	got := get(lost)
	if got.Status.Phase != vigilv1alpha1.ImageScanPending || seriesAttempts(&got.Status) != 0 || got.Status.FirstAttempt != 2 || len(got.Status.Vulnerabilities) != 1 {
		t.Errorf("an image without its SBOM is %s after %d attempts (series from %d) with %d findings; want it scanned again from attempt 2, its findings kept",
			got.Status.Phase, got.Status.Attempts, got.Status.FirstAttempt, len(got.Status.Vulnerabilities))
	}
	if condition := meta.FindStatusCondition(got.Status.Conditions, vigilv1alpha1.ConditionSBOMStored); condition == nil || condition.Reason != ReasonRescan || condition.Status != metav1.ConditionFalse {
		t.Errorf("SBOMStored condition %+v, want Rescan", condition)
	}
	if got := get(pending); got.Status.Phase != vigilv1alpha1.ImageScanPending || got.Status.Database != nil {
		t.Errorf("a pending image was matched: %+v", got.Status)
	}
}

func TestStaleImagesThatRunGoFirst(t *testing.T) {
	old := metav1.NewTime(time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC))
	current := old.Add(24 * time.Hour)
	var objects []client.Object
	for _, name := range []string{"a", "b", "c", "d"} {
		digest := "sha256:" + strings.Repeat(name, 64)
		objects = append(objects, &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:   vigilv1alpha1.ImageScanSpec{Digest: digest},
			Status: vigilv1alpha1.ImageScanStatus{Phase: vigilv1alpha1.ImageScanScanned, Database: &vigilv1alpha1.DatabaseVersion{Built: old}}})
	}
	for _, running := range []string{"d", "b"} {
		objects = append(objects, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "runs-" + running},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "app",
				ImageID: "registry.example/app@sha256:" + strings.Repeat(running, 64), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}})
	}
	c := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(objects...).
		WithIndex(&vigilv1alpha1.ImageScan{}, index.ImageScanPhase, func(o client.Object) []string {
			return []string{index.PhaseOf(o.(*vigilv1alpha1.ImageScan))}
		}).
		WithIndex(&corev1.Pod{}, index.PodRunningDigest, func(o client.Object) []string { return index.RunningDigests(o.(*corev1.Pod)) }).
		Build()
	names, err := NewRematcher(&Reconciler{}, c).stale(context.Background(), current)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "b,d,a,c" {
		t.Errorf("re-match order %v, want the running images b and d first, then a and c", names)
	}
}

func TestAStoredSBOMThatCannotBeMatchedAgainIsLoggedAndTheOthersAreStillMatched(t *testing.T) {
	old := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	current := old.Add(24 * time.Hour)
	var scans []client.Object
	stored := sbomStore{}
	for _, digestChar := range []string{"a", "b"} {
		digest := "sha256:" + strings.Repeat(digestChar, 64)
		scan := &vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(digest), Generation: 1},
			Spec: vigilv1alpha1.ImageScanSpec{Digest: digest, References: []vigilv1alpha1.ImageReference{{Image: "registry.example/app:" + digestChar, Namespace: "shop"}}},
			Status: vigilv1alpha1.ImageScanStatus{Phase: vigilv1alpha1.ImageScanScanned, Attempts: 1,
				Database: &vigilv1alpha1.DatabaseVersion{SchemaVersion: "v6.1.3", Built: metav1.NewTime(old)}}}
		scans = append(scans, scan)
		stored[digest] = sboms.OneDebianPackage
	}
	r := newReconciler(t, &fakeExecutor{}, fakeStore{}, scans...)
	r.Database = fixedDatabase{built: current}
	r.SBOMs = unreadable{sbomStore: stored, digest: scans[0].(*vigilv1alpha1.ImageScan).Spec.Digest}
	c := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(scans...).WithStatusSubresource(&vigilv1alpha1.ImageScan{}).
		WithIndex(&vigilv1alpha1.ImageScan{}, index.ImageScanPhase, func(o client.Object) []string {
			return []string{index.PhaseOf(o.(*vigilv1alpha1.ImageScan))}
		}).
		WithIndex(&corev1.Pod{}, index.PodRunningDigest, func(o client.Object) []string { return index.RunningDigests(o.(*corev1.Pod)) }).
		Build()
	r.Client, r.APIReader, r.Dispatcher.Reader = c, c, c
	var log testlog.Errors
	if err := NewRematcher(r, c).rematch(log.Into(context.Background())); err != nil {
		t.Fatal(err)
	}
	if logged := log.Messages(); len(logged) != 1 || !strings.Contains(logged[0], "Matching a stored SBOM again failed") {
		t.Errorf("logged %q, want the failed match", logged)
	}
	matched := &vigilv1alpha1.ImageScan{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(scans[1]), matched); err != nil {
		t.Fatal(err)
	}
	if !matched.Status.Database.Built.Time.Equal(current) {
		t.Errorf("the image after the one that failed was matched against %v, want %v", matched.Status.Database.Built, current)
	}
}
