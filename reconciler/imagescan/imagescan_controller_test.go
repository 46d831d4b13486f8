package imagescan

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/pkg/index"
	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/pkg/sbom"
	vigilscheme "github.com/vigil-dev/vigil/pkg/scheme"
)

var testDigest = "sha256:" + strings.Repeat("c", 64)

// fakeExecutor records submissions and answers Check with state.
type fakeExecutor struct {
	mu        sync.Mutex
	submitted []executor.Request
	state     executor.State
}

func (e *fakeExecutor) Submit(_ context.Context, req executor.Request) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.submitted = append(e.submitted, req)
	return nil
}

func (e *fakeExecutor) Check(context.Context, string, types.UID, int32) (executor.State, error) {
	return e.state, nil
}

// fakeStore holds the SBOMs of some digests.
type fakeStore map[string]bool

func (s fakeStore) Has(digest string) bool { return s[digest] }
func (s fakeStore) Get(digest string) ([]byte, error) {
	if !s[digest] {
		return nil, errors.New("not stored")
	}
	return []byte(`{}`), nil
}

// noDatabase is a Database with none loaded.
type noDatabase struct{}

func (noDatabase) Built() time.Time { return time.Time{} }
func (noDatabase) Acquire() (*match.Matcher, func(), error) {
	return nil, nil, errors.New("no database")
}

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme, err := vigilscheme.New()
	if err != nil {
		t.Fatal(err)
	}
	return scheme
}

func newReconciler(t *testing.T, exec *fakeExecutor, store fakeStore, objects ...client.Object) *Reconciler {
	t.Helper()
	c := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(objects...).
		WithStatusSubresource(&vigilv1alpha1.ImageScan{}).
		WithIndex(&vigilv1alpha1.ImageScan{}, index.ImageScanPhase, func(o client.Object) []string {
			return []string{index.PhaseOf(o.(*vigilv1alpha1.ImageScan))}
		}).Build()
	r := &Reconciler{
		Client: c, APIReader: c, Events: events.NewFakeRecorder(100), Executor: exec, SBOMs: store,
		Database: noDatabase{}, Matches: NewGate(1), MaxAttempts: 3, RetryBackoff: time.Minute, MaxRetryBackoff: time.Hour,
		Dispatcher: &Dispatcher{Reader: c, Concurrency: 1, wake: make(chan struct{}, 1), start: func(string) {}},
	}
	r.Dispatcher.Due = r.due
	return r
}

func scanIn(phase vigilv1alpha1.ImageScanPhase, attempts int32, mutate ...func(*vigilv1alpha1.ImageScan)) *vigilv1alpha1.ImageScan {
	scan := &vigilv1alpha1.ImageScan{
		ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(testDigest), Generation: 1},
		Spec: vigilv1alpha1.ImageScanSpec{Digest: testDigest, References: []vigilv1alpha1.ImageReference{
			{Image: "registry.example/shop/api:1.4", Namespace: "shop"},
		}},
		Status: vigilv1alpha1.ImageScanStatus{Phase: phase, Attempts: attempts},
	}
	for _, m := range mutate {
		m(scan)
	}
	return scan
}

func withCondition(kind string, status metav1.ConditionStatus, reason string) func(*vigilv1alpha1.ImageScan) {
	return func(scan *vigilv1alpha1.ImageScan) {
		meta.SetStatusCondition(&scan.Status.Conditions, metav1.Condition{Type: kind, Status: status, Reason: reason, ObservedGeneration: 1})
	}
}

// inSeriesFrom makes first the first attempt of the ImageScan's current series.
func inSeriesFrom(first int32) func(*vigilv1alpha1.ImageScan) {
	return func(scan *vigilv1alpha1.ImageScan) { scan.Status.FirstAttempt = first }
}

func withFindings(scan *vigilv1alpha1.ImageScan) {
	scan.Status.Database = &vigilv1alpha1.DatabaseVersion{SchemaVersion: "v6.1.3", Built: metav1.NewTime(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))}
	scan.Status.Vulnerabilities = []vigilv1alpha1.ImageVulnerability{{ID: "CVE-2021-44228", Severity: vigilv1alpha1.SeverityCritical, Package: "log4j-core", Installed: "2.14.1"}}
}

func TestTheScanStateMachine(t *testing.T) {
	recent := func(scan *vigilv1alpha1.ImageScan) {
		at := metav1.NewTime(time.Now())
		scan.Status.LastAttemptTime = &at
	}
	tests := []struct {
		name         string
		scan         *vigilv1alpha1.ImageScan
		granted      bool
		state        executor.State
		stored       bool
		wantPhase    vigilv1alpha1.ImageScanPhase
		wantAttempts int32
		wantSeries   int32 // attempts of the current series, when not wantAttempts
		wantSubmit   bool
		wantReason   string // of the SBOMStored condition, when set
		wantScanned  string // of the Scanned condition, when set
		wantFindings bool
	}{
		{name: "a new image waits for a slot", scan: scanIn("", 0), wantPhase: "", wantAttempts: 0},
		{name: "a new image with a slot starts its first attempt", scan: scanIn("", 0), granted: true,
			wantPhase: vigilv1alpha1.ImageScanScanning, wantAttempts: 1, wantSubmit: true, wantReason: ReasonScanning, wantScanned: ReasonScanning},
		{name: "an image scanned before keeps its findings and its Scanned condition while it is scanned again",
			scan: scanIn(vigilv1alpha1.ImageScanPending, 1, withFindings, inSeriesFrom(2),
				withCondition(vigilv1alpha1.ConditionScanned, metav1.ConditionTrue, ReasonMatched)), granted: true,
			wantPhase: vigilv1alpha1.ImageScanScanning, wantAttempts: 2, wantSeries: 1, wantSubmit: true, wantReason: ReasonScanning,
			wantScanned: ReasonMatched, wantFindings: true},
		{name: "a retry waits out its backoff even with a slot", scan: scanIn(vigilv1alpha1.ImageScanPending, 1, recent), granted: true,
			wantPhase: vigilv1alpha1.ImageScanPending, wantAttempts: 1},
		{name: "a running attempt is left alone", scan: scanIn(vigilv1alpha1.ImageScanScanning, 1), state: executor.Running,
			wantPhase: vigilv1alpha1.ImageScanScanning, wantAttempts: 1},
		{name: "a lost attempt goes back to the queue, counted", scan: scanIn(vigilv1alpha1.ImageScanScanning, 1), state: executor.Lost,
			wantPhase: vigilv1alpha1.ImageScanPending, wantAttempts: 1, wantReason: ReasonAttemptLost, wantScanned: ReasonAttemptLost},
		{name: "the last lost attempt fails the image", scan: scanIn(vigilv1alpha1.ImageScanScanning, 3), state: executor.Lost,
			wantPhase: vigilv1alpha1.ImageScanFailed, wantAttempts: 3, wantReason: ReasonScanFailed, wantScanned: ReasonScanFailed},
		{name: "the last lost attempt of a scan again fails the image, Scanned says so",
			scan:  scanIn(vigilv1alpha1.ImageScanScanning, 3, withFindings, withCondition(vigilv1alpha1.ConditionScanned, metav1.ConditionTrue, ReasonMatched)),
			state: executor.Lost, wantPhase: vigilv1alpha1.ImageScanFailed, wantAttempts: 3, wantReason: ReasonScanFailed, wantScanned: ReasonScanFailed,
			wantFindings: true},
		{name: "a stored SBOM that this replica lacks is scanned again, not counted",
			scan:      scanIn(vigilv1alpha1.ImageScanScanning, 1, withCondition(vigilv1alpha1.ConditionSBOMStored, metav1.ConditionTrue, ReasonStored)),
			wantPhase: vigilv1alpha1.ImageScanPending, wantAttempts: 1, wantSeries: -1, wantReason: ReasonSBOMNotStored},
		{name: "a scanned image's findings stay while it is scanned again",
			scan: scanIn(vigilv1alpha1.ImageScanScanning, 1, withFindings, withCondition(vigilv1alpha1.ConditionSBOMStored, metav1.ConditionTrue, ReasonStored),
				withCondition(vigilv1alpha1.ConditionScanned, metav1.ConditionTrue, ReasonMatched)),
			wantPhase: vigilv1alpha1.ImageScanPending, wantAttempts: 1, wantSeries: -1, wantReason: ReasonSBOMNotStored, wantScanned: ReasonMatched,
			wantFindings: true},
		{name: "a Scanned image is left to the Rematcher", scan: scanIn(vigilv1alpha1.ImageScanScanned, 1, withFindings),
			wantPhase: vigilv1alpha1.ImageScanScanned, wantAttempts: 1, wantFindings: true},
		{name: "a final failure stays while the spec is unchanged",
			scan:      scanIn(vigilv1alpha1.ImageScanFailed, 3, withCondition(vigilv1alpha1.ConditionScanned, metav1.ConditionFalse, ReasonScanFailed)),
			wantPhase: vigilv1alpha1.ImageScanFailed, wantAttempts: 3},
		{name: "a final failure starts afresh when the references change",
			scan: scanIn(vigilv1alpha1.ImageScanTooLarge, 1, withCondition(vigilv1alpha1.ConditionScanned, metav1.ConditionFalse, ReasonOOMKilled),
				func(scan *vigilv1alpha1.ImageScan) { scan.Generation = 2 }),
			wantPhase: vigilv1alpha1.ImageScanPending, wantAttempts: 1, wantSeries: -1},
		{name: "a new series' attempt has a number of its own", scan: scanIn(vigilv1alpha1.ImageScanPending, 3, inSeriesFrom(4)), granted: true,
			wantPhase: vigilv1alpha1.ImageScanScanning, wantAttempts: 4, wantSeries: 1, wantSubmit: true, wantReason: ReasonScanning},
		{name: "a new series has the whole budget", scan: scanIn(vigilv1alpha1.ImageScanScanning, 5, inSeriesFrom(4)), state: executor.Lost,
			wantPhase: vigilv1alpha1.ImageScanPending, wantAttempts: 5, wantSeries: 2, wantReason: ReasonAttemptLost},
		{name: "a new series ends with its budget", scan: scanIn(vigilv1alpha1.ImageScanScanning, 6, inSeriesFrom(4)), state: executor.Lost,
			wantPhase: vigilv1alpha1.ImageScanFailed, wantAttempts: 6, wantSeries: 3, wantReason: ReasonScanFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exec := &fakeExecutor{state: tc.state}
			r := newReconciler(t, exec, fakeStore{testDigest: tc.stored}, tc.scan)
			if tc.granted {
				r.Dispatcher.grants = map[string]grant{tc.scan.Name: {at: time.Now()}}
			}
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: tc.scan.Name}}); err != nil {
				t.Fatal(err)
			}
			got := &vigilv1alpha1.ImageScan{}
			if err := r.Client.Get(context.Background(), client.ObjectKeyFromObject(tc.scan), got); err != nil {
				t.Fatal(err)
			}
			if got.Status.Phase != tc.wantPhase || got.Status.Attempts != tc.wantAttempts {
				t.Errorf("phase %q attempts %d, want %q and %d", got.Status.Phase, got.Status.Attempts, tc.wantPhase, tc.wantAttempts)
			}
			wantSeries := tc.wantSeries
			switch wantSeries {
			case 0:
				wantSeries = tc.wantAttempts
			case -1: // a new series, not started
				wantSeries = 0
			}
			if series := seriesAttempts(&got.Status); series != wantSeries {
				t.Errorf("%d attempts in the series (first %d), want %d", series, got.Status.FirstAttempt, wantSeries)
			}
			if submitted := len(exec.submitted) > 0; submitted != tc.wantSubmit {
				t.Errorf("submitted %v, want %v", exec.submitted, tc.wantSubmit)
			} else if submitted && exec.submitted[0].Attempt != tc.wantAttempts {
				t.Errorf("submitted attempt %d, the status says %d", exec.submitted[0].Attempt, tc.wantAttempts)
			}
			if tc.wantReason != "" {
				condition := meta.FindStatusCondition(got.Status.Conditions, vigilv1alpha1.ConditionSBOMStored)
				if condition == nil || condition.Reason != tc.wantReason {
					t.Errorf("SBOMStored condition %+v, want reason %s", condition, tc.wantReason)
				}
			}
			if tc.wantScanned != "" {
				if condition := scannedCondition(got); condition.Reason != tc.wantScanned {
					t.Errorf("Scanned condition %+v, want reason %s", condition, tc.wantScanned)
				}
			}
			if hasFindings := len(got.Status.Vulnerabilities) > 0; hasFindings != tc.wantFindings {
				t.Errorf("findings %v, want %v", got.Status.Vulnerabilities, tc.wantFindings)
			}
		})
	}
}

func TestRecordOutcome(t *testing.T) {
	tooLarge := &sbom.TooLargeError{What: "image", Size: 2 << 30, Limit: 1 << 30}
	tests := []struct {
		name        string
		scan        *vigilv1alpha1.ImageScan
		outcome     executor.Outcome
		wantErr     error
		wantPhase   vigilv1alpha1.ImageScanPhase
		wantStored  bool
		wantReason  string
		wantSize    int64
		wantRetried bool // the next attempt waits a backoff
		wantMessage string
	}{
		{name: "a stored SBOM", scan: scanIn(vigilv1alpha1.ImageScanScanning, 1),
			outcome:   executor.Outcome{Digest: testDigest, Attempt: 1, ImageSize: 4096},
			wantPhase: vigilv1alpha1.ImageScanScanning, wantStored: true, wantSize: 4096},
		{name: "a stored SBOM without the image's size keeps the size known before",
			scan: scanIn(vigilv1alpha1.ImageScanScanning, 2, func(scan *vigilv1alpha1.ImageScan) {
				scan.Status.SBOM = &vigilv1alpha1.SBOMSummary{ImageSize: 8192}
			}),
			outcome:   executor.Outcome{Digest: testDigest, Attempt: 2},
			wantPhase: vigilv1alpha1.ImageScanScanning, wantStored: true, wantSize: 8192},
		{name: "a failure with attempts left is retried", scan: scanIn(vigilv1alpha1.ImageScanScanning, 1),
			outcome:   executor.Outcome{Digest: testDigest, Attempt: 1, Err: errors.New("connection reset")},
			wantPhase: vigilv1alpha1.ImageScanPending, wantReason: ReasonRetryScheduled, wantRetried: true},
		{name: "the last failure is final", scan: scanIn(vigilv1alpha1.ImageScanScanning, 3),
			outcome:   executor.Outcome{Digest: testDigest, Attempt: 3, Err: errors.New("connection reset")},
			wantPhase: vigilv1alpha1.ImageScanFailed, wantReason: ReasonScanFailed},
		{name: "a new series has attempts left after the previous one's", scan: scanIn(vigilv1alpha1.ImageScanScanning, 4, inSeriesFrom(4)),
			outcome:   executor.Outcome{Digest: testDigest, Attempt: 4, Err: errors.New("connection reset")},
			wantPhase: vigilv1alpha1.ImageScanPending, wantReason: ReasonRetryScheduled, wantRetried: true},
		{name: "refused credentials are final", scan: scanIn(vigilv1alpha1.ImageScanScanning, 1),
			outcome:   executor.Outcome{Digest: testDigest, Attempt: 1, Err: fmt.Errorf("pulling: %w", sbom.ErrUnauthorized)},
			wantPhase: vigilv1alpha1.ImageScanFailed, wantReason: ReasonAuthenticationFailed},
		{name: "every reference refused is final", scan: scanIn(vigilv1alpha1.ImageScanScanning, 1),
			outcome: executor.Outcome{Digest: testDigest, Attempt: 1, Err: errors.Join(
				fmt.Errorf("pulling a@%s: %w", testDigest, sbom.ErrUnauthorized),
				&transport.Error{StatusCode: http.StatusForbidden})},
			wantPhase: vigilv1alpha1.ImageScanFailed, wantReason: ReasonAuthenticationFailed},
		{name: "one namespace's refused credentials do not end another's retry", scan: scanIn(vigilv1alpha1.ImageScanScanning, 1),
			outcome: executor.Outcome{Digest: testDigest, Attempt: 1, Err: errors.Join(
				fmt.Errorf("pulling a@%s: %w", testDigest, sbom.ErrUnauthorized),
				&transport.Error{StatusCode: http.StatusServiceUnavailable})},
			wantPhase: vigilv1alpha1.ImageScanPending, wantReason: ReasonRetryScheduled, wantRetried: true,
			wantMessage: "the registry refused access; the registry answered 503 Service Unavailable"},
		{name: "a registry the policy denies is final", scan: scanIn(vigilv1alpha1.ImageScanScanning, 1),
			outcome:   executor.Outcome{Digest: testDigest, Attempt: 1, Err: fmt.Errorf("pulling: %w", &sbom.RegistryDeniedError{Address: "169.254.169.254:80", Rule: "169.254.0.0/16"})},
			wantPhase: vigilv1alpha1.ImageScanFailed, wantReason: sbom.ReasonRegistryDenied},
		{name: "a too large image", scan: scanIn(vigilv1alpha1.ImageScanScanning, 1),
			outcome:   executor.Outcome{Digest: testDigest, Attempt: 1, Err: tooLarge},
			wantPhase: vigilv1alpha1.ImageScanTooLarge, wantReason: ReasonTooLarge},
		{name: "a scan killed for its memory", scan: scanIn(vigilv1alpha1.ImageScanScanning, 1),
			outcome:   executor.Outcome{Digest: testDigest, Attempt: 1, Err: &executor.OOMKilledError{Limit: "1Gi"}},
			wantPhase: vigilv1alpha1.ImageScanTooLarge, wantReason: ReasonOOMKilled},
		{name: "an outcome of an earlier attempt is stale", scan: scanIn(vigilv1alpha1.ImageScanScanning, 2),
			outcome: executor.Outcome{Digest: testDigest, Attempt: 1}, wantErr: executor.ErrStaleAttempt,
			wantPhase: vigilv1alpha1.ImageScanScanning},
		{name: "a second report of a recorded attempt is stale",
			scan:    scanIn(vigilv1alpha1.ImageScanScanning, 1, withCondition(vigilv1alpha1.ConditionSBOMStored, metav1.ConditionTrue, ReasonStored)),
			outcome: executor.Outcome{Digest: testDigest, Attempt: 1, Err: errors.New("forged")}, wantErr: executor.ErrStaleAttempt,
			wantPhase: vigilv1alpha1.ImageScanScanning, wantStored: true},
		{name: "an outcome of an image no longer scanning is stale", scan: scanIn(vigilv1alpha1.ImageScanScanned, 1),
			outcome: executor.Outcome{Digest: testDigest, Attempt: 1}, wantErr: executor.ErrStaleAttempt,
			wantPhase: vigilv1alpha1.ImageScanScanned},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReconciler(t, &fakeExecutor{}, fakeStore{}, tc.scan)
			if err := r.RecordOutcome(context.Background(), tc.outcome); !errors.Is(err, tc.wantErr) {
				t.Fatalf("RecordOutcome = %v, want %v", err, tc.wantErr)
			}
			got := &vigilv1alpha1.ImageScan{}
			if err := r.Client.Get(context.Background(), client.ObjectKeyFromObject(tc.scan), got); err != nil {
				t.Fatal(err)
			}
			if got.Status.Phase != tc.wantPhase {
				t.Errorf("phase %q, want %q", got.Status.Phase, tc.wantPhase)
			}
			if stored := meta.IsStatusConditionTrue(got.Status.Conditions, vigilv1alpha1.ConditionSBOMStored); stored != tc.wantStored {
				t.Errorf("SBOM stored %v, want %v", stored, tc.wantStored)
			}
			if tc.wantReason != "" && scannedCondition(got).Reason != tc.wantReason {
				t.Errorf("Scanned reason %q, want %q", scannedCondition(got).Reason, tc.wantReason)
			}
			if tc.wantMessage != "" && scannedCondition(got).Message != tc.wantMessage {
				t.Errorf("Scanned message %q, want %q", scannedCondition(got).Message, tc.wantMessage)
			}
			if tc.wantSize > 0 && (got.Status.SBOM == nil || got.Status.SBOM.ImageSize != tc.wantSize) {
				t.Errorf("image size %+v, want %d", got.Status.SBOM, tc.wantSize)
			}
			if tc.wantRetried && r.retryWait(got, time.Now()) <= 0 {
				t.Error("a retried failure does not wait before its next attempt")
			}
			// A recorded failure is told as a Warning event on the ImageScan; nothing else is.
			events := r.Events.(*events.FakeRecorder).Events
			wantEvent := tc.wantErr == nil && tc.outcome.Err != nil
			select {
			case event := <-events:
				if !wantEvent || !strings.HasPrefix(event, corev1.EventTypeWarning+" "+tc.wantReason) {
					t.Errorf("event %q, want one: %v", event, wantEvent)
				}
			default:
				if wantEvent {
					t.Error("no event for a failed attempt")
				}
			}
		})
	}
}

func TestApplyMatchListsTheMostSevereAndCountsAll(t *testing.T) {
	scan := scanIn(vigilv1alpha1.ImageScanScanning, 1)
	scan.Status.SBOM = &vigilv1alpha1.SBOMSummary{ImageSize: 4096}
	result := &match.Result{Database: match.Database{SchemaVersion: "v6.1.3", Built: time.Now()}, Packages: 3000, Distro: "debian 12"}
	for i := range vigilv1alpha1.MaxImageScanVulnerabilities + 5 {
		severity := match.SeverityHigh
		if i >= vigilv1alpha1.MaxImageScanVulnerabilities {
			severity = match.SeverityLow
		}
		result.Findings = append(result.Findings, match.Finding{
			Details:   match.Details{ID: fmt.Sprintf("CVE-2026-%05d", i), Severity: severity},
			Namespace: "debian:distro:debian:12", Related: []match.Reference{{ID: "DSA-1", Namespace: "debian"}, {ID: "x", Namespace: "y"}, {ID: "z", Namespace: "w"}},
			Package: match.Package{Name: "libssl3", Version: "3.0.7-1", Type: "deb", Locations: []string{"/var/lib/dpkg/status"}},
			FixedIn: []string{"3.0.8-1"}, FixState: match.FixStateFixed,
		})
	}
	status := scan.Status.DeepCopy()
	applyMatch(status, scan, result, time.Now())
	if status.Phase != vigilv1alpha1.ImageScanScanned || len(status.Vulnerabilities) != vigilv1alpha1.MaxImageScanVulnerabilities {
		t.Fatalf("phase %s with %d vulnerabilities", status.Phase, len(status.Vulnerabilities))
	}
	if status.SeverityCounts.High != int32(vigilv1alpha1.MaxImageScanVulnerabilities) || status.SeverityCounts.Low != 5 {
		t.Errorf("counts %+v", status.SeverityCounts)
	}
	if status.SBOM.ImageSize != 4096 || status.SBOM.Packages != 3000 || status.SBOM.Distro != "debian 12" {
		t.Errorf("SBOM summary %+v", status.SBOM)
	}
	first := status.Vulnerabilities[0]
	if first.Namespace != "debian:distro:debian:12" || len(first.Related) != vigilv1alpha1.MaxRelatedAdvisories ||
		first.FixedIn != "3.0.8-1" || first.Type != "deb" || first.Location != "/var/lib/dpkg/status" || first.FixState != vigilv1alpha1.FixStateFixed {
		t.Errorf("first vulnerability %+v", first)
	}
	if !strings.Contains(scannedCondition(&vigilv1alpha1.ImageScan{Status: *status}).Message, "the 1000 most severe are listed") {
		t.Errorf("the condition does not say the list is cut: %+v", status.Conditions)
	}
}

func TestTheDispatcherBoundsScansAndIsFairBetweenNamespaces(t *testing.T) {
	now := time.Now()
	scan := func(name, namespace string, created time.Duration, mutate ...func(*vigilv1alpha1.ImageScan)) vigilv1alpha1.ImageScan {
		s := vigilv1alpha1.ImageScan{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(now.Add(created))}}
		s.Spec.References = []vigilv1alpha1.ImageReference{{Image: name, Namespace: namespace}}
		for _, m := range mutate {
			m(&s)
		}
		return s
	}
	var pending []vigilv1alpha1.ImageScan
	for i := range 100 { // the attacker recorded first, and many
		pending = append(pending, scan(fmt.Sprintf("attacker-%03d", i), "attacker", time.Duration(i-1000)*time.Second))
	}
	pending = append(pending,
		scan("shop-api", "shop", 0),
		scan("jobs-report", "jobs", time.Second),
		scan("shop-rescan", "shop", -2000*time.Second, withFindings), // scanned before: goes after first scans
	)
	d := &Dispatcher{Concurrency: 3, Due: func(*vigilv1alpha1.ImageScan, time.Time) bool { return true }}
	inFlight := []vigilv1alpha1.ImageScan{scan("attacker-running", "attacker", 0)}
	chosen := d.choose(inFlight, pending, now)
	if len(chosen) != 2 {
		t.Fatalf("granted %v with 1 of 3 slots in flight, want 2", chosen)
	}
	if !contains(chosen, "shop-api") || !contains(chosen, "jobs-report") {
		t.Errorf("granted %v: the namespaces without a scan in flight go first", chosen)
	}
	// Granted slots count until their scan leaves Pending: nothing more is granted.
	if again := d.choose(inFlight, pending, now); len(again) != 0 {
		t.Errorf("granted %v beyond the bound", again)
	}
	if !d.Take("shop-api", 1) || d.Take("shop-api", 1) || d.Take("attacker-001", 1) {
		t.Error("a grant was not taken exactly once")
	}
	// The scans started: one finished, so one slot is free; first scans before scans again.
	remaining := pending[:100]
	remaining = append(remaining, pending[102])
	next := d.choose([]vigilv1alpha1.ImageScan{scan("jobs-report", "jobs", 0), scan("shop-api", "shop", 0)}, remaining, now)
	if len(next) != 1 || next[0] != "attacker-000" {
		t.Errorf("granted %v, want the attacker's oldest first scan before a scan again", next)
	}
}

func contains(list []string, value string) bool {
	for _, v := range list {
		if v == value {
			return true
		}
	}
	return false
}

func TestTheGatePutsFirstMatchesBeforeRematches(t *testing.T) {
	gate := NewGate(1)
	ctx := context.Background()
	release, err := gate.Acquire(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 2)
	var started sync.WaitGroup
	started.Add(1)
	go func() { // a re-match waits first
		started.Done()
		r, _ := gate.Acquire(ctx, false)
		order <- "rematch"
		r()
	}()
	started.Wait()
	time.Sleep(20 * time.Millisecond)
	go func() {
		r, _ := gate.Acquire(ctx, true)
		order <- "first"
		r()
	}()
	time.Sleep(20 * time.Millisecond)
	release()
	if got := <-order; got != "first" {
		t.Errorf("%s went first, want the first match", got)
	}
	<-order

	cancelled, cancel := context.WithCancel(ctx)
	hold, _ := gate.Acquire(ctx, true)
	cancel()
	if _, err := gate.Acquire(cancelled, true); err == nil {
		t.Error("Acquire returned a slot after its context ended")
	}
	hold()
	if r, err := gate.Acquire(ctx, false); err != nil {
		t.Errorf("a re-match waits for ever after a first match gave up: %v", err)
	} else {
		r()
	}
}

func TestApplyMatchKeepsTheTimesThatDidNotChange(t *testing.T) {
	earlier := metav1.NewTime(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC))
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	built := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	result := &match.Result{Database: match.Database{SchemaVersion: "v6.1.3", Built: built}}
	database := func(at time.Time) *vigilv1alpha1.DatabaseVersion {
		return &vigilv1alpha1.DatabaseVersion{SchemaVersion: "v6.1.3", Built: metav1.NewTime(at)}
	}
	tests := []struct {
		name                    string
		status                  vigilv1alpha1.ImageScanStatus
		wantScanTime, wantMatch time.Time
	}{
		{"a first match", vigilv1alpha1.ImageScanStatus{}, now, now},
		{"a scanned SBOM matched first", vigilv1alpha1.ImageScanStatus{ScanTime: &earlier}, earlier.Time, now},
		{"matched again against the same database", vigilv1alpha1.ImageScanStatus{ScanTime: &earlier, MatchTime: &earlier, Database: database(built)},
			earlier.Time, earlier.Time},
		{"matched against the same database, its match time unknown", vigilv1alpha1.ImageScanStatus{ScanTime: &earlier, Database: database(built)},
			earlier.Time, now},
		{"matched against a new database", vigilv1alpha1.ImageScanStatus{ScanTime: &earlier, MatchTime: &earlier, Database: database(built.Add(-24 * time.Hour))},
			earlier.Time, now},
	}
	for _, tc := range tests {
		status := tc.status.DeepCopy()
		applyMatch(status, scanIn(vigilv1alpha1.ImageScanScanning, 1), result, now)
		if status.ScanTime == nil || !status.ScanTime.Time.Equal(tc.wantScanTime) || status.MatchTime == nil || !status.MatchTime.Time.Equal(tc.wantMatch) {
			t.Errorf("%s: scanned %v, matched %v; want %v and %v", tc.name, status.ScanTime, status.MatchTime, tc.wantScanTime, tc.wantMatch)
		}
	}
}

func TestApplyMatchOfExactlyTheListsBoundCutsNothing(t *testing.T) {
	scan := scanIn(vigilv1alpha1.ImageScanScanning, 1)
	result := &match.Result{Database: match.Database{SchemaVersion: "v6.1.3", Built: time.Now()}, Packages: 10}
	for i := range vigilv1alpha1.MaxImageScanVulnerabilities {
		// no fix, no location known: nothing to list for them
		result.Findings = append(result.Findings, match.Finding{Details: match.Details{ID: fmt.Sprintf("CVE-2026-%05d", i), Severity: match.SeverityMedium},
			Package: match.Package{Name: "zlib", Version: "1.2.13"}, FixState: match.FixStateNotFixed})
	}
	status := scan.Status.DeepCopy()
	applyMatch(status, scan, result, time.Now())
	if len(status.Vulnerabilities) != vigilv1alpha1.MaxImageScanVulnerabilities {
		t.Fatalf("%d vulnerabilities listed", len(status.Vulnerabilities))
	}
	if first := status.Vulnerabilities[0]; first.FixedIn != "" || first.Location != "" {
		t.Errorf("first vulnerability %+v, want no fix and no location", first)
	}
	if message := scannedCondition(&vigilv1alpha1.ImageScan{Status: *status}).Message; strings.Contains(message, "most severe") {
		t.Errorf("the condition says the list is cut: %q", message)
	}
}
