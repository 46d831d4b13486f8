package executor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/sbomstore"
)

const (
	testDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	// testScanUID is the UID of the ImageScan whose attempts the tests run.
	testScanUID = "5c1b2f0e-8d2a-4c55-9a11-3e7f0c2d9b44"
	// otherDigest is the digest of another running scan Job, whose pod holds a valid token too.
	otherDigest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

// outcomes records the outcomes it is given; stale makes it refuse them as stale.
type outcomes struct {
	mu       sync.Mutex
	recorded []Outcome
	stale    bool
	err      error // what RecordOutcome returns, when set
}

func (o *outcomes) RecordOutcome(_ context.Context, outcome Outcome) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stale {
		return ErrStaleAttempt
	}
	if o.err != nil {
		return o.err
	}
	o.recorded = append(o.recorded, outcome)
	return nil
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r    *bytes.Reader
	read int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}

type reportWorld struct {
	handler  *ReportHandler
	outcomes *outcomes
	store    *sbomstore.Store
	leader   bool
	reviews  *int // the TokenReviews made
}

// tokens are what the fake TokenReview knows: token → the user it authenticates.
var tokens = map[string]authenticationv1.UserInfo{
	"scan-pod": {Username: "system:serviceaccount:vigil-system:vigil-scanner", Extra: map[string]authenticationv1.ExtraValue{
		"authentication.kubernetes.io/pod-name": {"vigil-scan-1-x"}, "authentication.kubernetes.io/pod-uid": {"pod-uid"},
	}},
	"ended-pod": {Username: "system:serviceaccount:vigil-system:vigil-scanner", Extra: map[string]authenticationv1.ExtraValue{
		"authentication.kubernetes.io/pod-name": {"vigil-scan-ended-x"}, "authentication.kubernetes.io/pod-uid": {"ended-uid"},
	}},
	"failed-pod": {Username: "system:serviceaccount:vigil-system:vigil-scanner", Extra: map[string]authenticationv1.ExtraValue{
		"authentication.kubernetes.io/pod-name": {"vigil-scan-failed-x"}, "authentication.kubernetes.io/pod-uid": {"failed-uid"},
	}},
	"deleted-pod": {Username: "system:serviceaccount:vigil-system:vigil-scanner", Extra: map[string]authenticationv1.ExtraValue{
		"authentication.kubernetes.io/pod-name": {"vigil-scan-1-x"}, "authentication.kubernetes.io/pod-uid": {"an-earlier-pod"},
	}},
	"other-pod": {Username: "system:serviceaccount:vigil-system:vigil-scanner", Extra: map[string]authenticationv1.ExtraValue{
		"authentication.kubernetes.io/pod-name": {"vigil-scan-other-x"}, "authentication.kubernetes.io/pod-uid": {"other-uid"},
	}},
	"unbound": {Username: "system:serviceaccount:vigil-system:vigil-scanner"},
	"tenant": {Username: "system:serviceaccount:shop:default", Extra: map[string]authenticationv1.ExtraValue{
		"authentication.kubernetes.io/pod-name": {"vigil-scan-1-x"}, "authentication.kubernetes.io/pod-uid": {"pod-uid"},
	}},
}

// scanJob returns a scan Job and its pod; ended, when set, is the condition the Job ended with.
func scanJob(name, uid, digest string, ended batchv1.JobConditionType) (*batchv1.Job, *corev1.Pod) {
	labels := map[string]string{ComponentLabel: ComponentValue}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{
		Namespace: "vigil-system", Name: name, UID: types.UID("job-uid-" + uidOf(name)), Labels: labels,
		Annotations: map[string]string{DigestAnnotation: digest, AttemptAnnotation: "2"},
	}}
	if ended != "" {
		job.Status.Conditions = []batchv1.JobCondition{{Type: ended, Status: corev1.ConditionTrue}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "vigil-system", Name: name + "-x", UID: types.UID(uid), Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: name, UID: job.UID, Controller: ptr.To(true)}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	return job, pod
}

func uidOf(name string) string { return strings.ReplaceAll(name, "-", "") }

func newReportWorld(t *testing.T) *reportWorld {
	t.Helper()
	scheme := clientgoscheme.Scheme
	job, pod := scanJob("vigil-scan-1", "pod-uid", testDigest, "")
	endedJob, endedPod := scanJob("vigil-scan-ended", "ended-uid", testDigest, batchv1.JobComplete)
	failedJob, failedPod := scanJob("vigil-scan-failed", "failed-uid", testDigest, batchv1.JobFailed)
	otherJob, otherPod := scanJob("vigil-scan-other", "other-uid", otherDigest, "")
	reviews := new(int)
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(job, pod, endedJob, endedPod, failedJob, failedPod, otherJob, otherPod).
		WithInterceptorFuncs(interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			review, ok := obj.(*authenticationv1.TokenReview)
			if !ok {
				return c.Create(ctx, obj, opts...)
			}
			*reviews++
			if len(review.Spec.Audiences) != 1 || review.Spec.Audiences[0] != ReportAudience {
				return errors.New("the review does not ask for the report audience")
			}
			if user, ok := tokens[review.Spec.Token]; ok {
				review.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: user, Audiences: review.Spec.Audiences}
			}
			return nil
		}}).Build()
	store, err := sbomstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &reportWorld{outcomes: &outcomes{}, store: store, leader: true, reviews: reviews}
	w.handler = &ReportHandler{
		Client: c, Reader: c, Namespace: "vigil-system", ServiceAccountName: "vigil-scanner",
		SBOMs: store, Outcomes: w.outcomes, IsLeader: func() bool { return w.leader }, MaxSBOMBytes: 1 << 20,
	}
	return w
}

func (w *reportWorld) post(kind, token string, body *countingReader) *httptest.ResponseRecorder {
	request := httptest.NewRequest(http.MethodPost, ReportPath+"?kind="+kind, body)
	if token != "" {
		request.Header.Set("Authorization", "Bearer "+token)
	}
	request.Header.Set(ImageSizeHeader, "4096")
	recorder := httptest.NewRecorder()
	w.handler.ServeHTTP(recorder, request)
	return recorder
}

func body(s string) *countingReader {
	return &countingReader{r: bytes.NewReader([]byte(s))}
}

func TestAReportIsAuthenticatedBeforeItsBodyIsRead(t *testing.T) {
	tests := []struct {
		name     string
		token    string
		notLead  bool
		wantCode int
	}{
		{"not the leader", "scan-pod", true, http.StatusServiceUnavailable},
		{"no token", "", false, http.StatusUnauthorized},
		{"a token that the API server does not know", "forged", false, http.StatusForbidden},
		{"a tenant's token", "tenant", false, http.StatusForbidden},
		{"a scanner token bound to no pod", "unbound", false, http.StatusForbidden},
		{"a token of a pod that is gone", "deleted-pod", false, http.StatusForbidden},
		{"a token of a Job that ended (a replay)", "ended-pod", false, http.StatusForbidden},
		{"a token of a Job that failed (a replay)", "failed-pod", false, http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newReportWorld(t)
			w.leader = !tc.notLead
			sent := body(strings.Repeat("x", 4096))
			if got := w.post(ReportSBOM, tc.token, sent); got.Code != tc.wantCode {
				t.Errorf("answer %d %s, want %d", got.Code, got.Body.String(), tc.wantCode)
			}
			if sent.read != 0 {
				t.Errorf("%d bytes of the body were read", sent.read)
			}
			if len(w.outcomes.recorded) != 0 || w.store.Has(testDigest) {
				t.Error("a refused report was recorded")
			}
		})
	}
}

func TestAReportIsAboutItsJobWhateverItsBodyClaims(t *testing.T) {
	w := newReportWorld(t)
	got := w.post(ReportSBOM, "scan-pod", body(`{"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","artifacts":[]}`))
	if got.Code != http.StatusNoContent {
		t.Fatalf("answer %d %s", got.Code, got.Body.String())
	}
	if !w.store.Has(testDigest) {
		t.Error("the SBOM is not stored under the Job's digest")
	}
	want := Outcome{Digest: testDigest, Attempt: 2, ImageSize: 4096}
	if len(w.outcomes.recorded) != 1 || w.outcomes.recorded[0] != want {
		t.Errorf("recorded %+v, want %+v", w.outcomes.recorded, want)
	}
}

func TestAValidScanTokenOfAnotherDigestsPodCannotReportForThisDigest(t *testing.T) {
	tests := []struct {
		kind, body string
	}{
		{ReportSBOM, `{"digest":"` + testDigest + `","artifacts":[]}`},
		{ReportFailure, `{"digest":"` + testDigest + `","error":"forged"}`},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			w := newReportWorld(t)
			// The other scan Job's pod claims the first Job's digest, in the query and the body.
			request := httptest.NewRequest(http.MethodPost, ReportPath+"?kind="+tc.kind+"&digest="+testDigest, body(tc.body))
			request.Header.Set("Authorization", "Bearer other-pod")
			recorder := httptest.NewRecorder()
			w.handler.ServeHTTP(recorder, request)
			if w.store.Has(testDigest) {
				t.Error("another digest's scan pod stored an SBOM for this digest")
			}
			// Its report counts, for its own Job's digest only.
			if len(w.outcomes.recorded) != 1 || w.outcomes.recorded[0].Digest != otherDigest {
				t.Errorf("answer %d %s; recorded %+v, want one outcome of %s", recorder.Code, recorder.Body.String(), w.outcomes.recorded, otherDigest)
			}
		})
	}
}

func TestAFailureReport(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantCode int
		check    func(error) bool
	}{
		{"a registry that refused the credentials", `{"error":"denied","unauthorized":true}`, http.StatusNoContent,
			func(err error) bool { return errors.Is(err, sbom.ErrUnauthorized) }},
		{"an image too large", `{"error":"too large","tooLarge":true}`, http.StatusNoContent,
			func(err error) bool { return errors.As(err, new(*sbom.TooLargeError)) }},
		{"an error", `{"error":"connection reset"}`, http.StatusNoContent, func(err error) bool { return err.Error() == "connection reset" }},
		{"no error", `{}`, http.StatusBadRequest, nil},
		{"not JSON", `{"error":`, http.StatusBadRequest, nil},
		{"a body above its bound", `{"error":"` + strings.Repeat("x", MaxFailureBytes) + `"}`, http.StatusBadRequest, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newReportWorld(t)
			if got := w.post(ReportFailure, "scan-pod", body(tc.body)); got.Code != tc.wantCode {
				t.Fatalf("answer %d %s, want %d", got.Code, got.Body.String(), tc.wantCode)
			}
			if tc.check == nil {
				if len(w.outcomes.recorded) != 0 {
					t.Errorf("a bad report recorded %+v", w.outcomes.recorded)
				}
				return
			}
			if len(w.outcomes.recorded) != 1 || !tc.check(w.outcomes.recorded[0].Err) || w.outcomes.recorded[0].Attempt != 2 {
				t.Errorf("recorded %+v", w.outcomes.recorded)
			}
		})
	}
}

func TestAnSBOMAboveItsBoundLeavesTheImageTooLarge(t *testing.T) {
	w := newReportWorld(t)
	got := w.post(ReportSBOM, "scan-pod", body(strings.Repeat("x", 2<<20)))
	if got.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("answer %d %s", got.Code, got.Body.String())
	}
	if w.store.Has(testDigest) {
		t.Error("a cut SBOM was stored")
	}
	var tooLarge *sbom.TooLargeError
	if len(w.outcomes.recorded) != 1 || !errors.As(w.outcomes.recorded[0].Err, &tooLarge) {
		t.Fatalf("recorded %+v", w.outcomes.recorded)
	}
	if tooLarge.Limit != 1<<20 || tooLarge.Size <= tooLarge.Limit {
		t.Errorf("recorded a size of %d for a limit of %d, want a size above the limit", tooLarge.Size, tooLarge.Limit)
	}
}

func TestTheRetriesOfAReportCostOneTokenReview(t *testing.T) {
	w := newReportWorld(t)
	w.outcomes.err = errors.New("the API server is unavailable")
	if got := w.post(ReportFailure, "scan-pod", body(`{"error":"connection reset"}`)); got.Code != http.StatusInternalServerError {
		t.Fatalf("answer %d %s", got.Code, got.Body.String())
	}
	w.outcomes.err = nil
	if got := w.post(ReportFailure, "scan-pod", body(`{"error":"connection reset"}`)); got.Code != http.StatusNoContent {
		t.Fatalf("the retry: answer %d %s", got.Code, got.Body.String())
	}
	if *w.reviews != 1 {
		t.Errorf("%d token reviews for a report and its retry, want 1", *w.reviews)
	}
}

func TestAReportWhoseOutcomeCannotBeRecordedIsAnsweredWithAnErrorToRetry(t *testing.T) {
	for _, report := range []struct{ kind, body string }{
		{ReportSBOM, `{"artifacts":[]}`},
		{ReportFailure, `{"error":"connection reset"}`},
		{ReportSBOM, strings.Repeat("x", 2<<20)}, // too large: the outcome is recorded too
	} {
		w := newReportWorld(t)
		w.outcomes.err = errors.New("the API server is unavailable")
		if got := w.post(report.kind, "scan-pod", body(report.body)); got.Code != http.StatusInternalServerError {
			t.Errorf("a %s report: answer %d %s, want 500 so that the scan Job sends it again", report.kind, got.Code, got.Body.String())
		}
	}
}

func TestASecondReportOfAnAttemptIsRefused(t *testing.T) {
	w := newReportWorld(t)
	w.outcomes.stale = true
	if got := w.post(ReportFailure, "scan-pod", body(`{"error":"forged after the fact"}`)); got.Code != http.StatusConflict {
		t.Errorf("answer %d %s, want 409", got.Code, got.Body.String())
	}
}

func TestAnAuthenticatedReportIsReadWithinTheDefaultReadTimeout(t *testing.T) {
	w := newReportWorld(t)
	server := httptest.NewServer(w.handler)
	defer server.Close()
	// The body's second half comes after a pause, so that it is read after the handler sets its
	// deadline: a scanner on a busy node sends its SBOM in parts.
	reader, writer := io.Pipe()
	go func() {
		_, _ = writer.Write([]byte(`{"artifacts":[`))
		time.Sleep(200 * time.Millisecond)
		_, _ = writer.Write([]byte(`]}`))
		_ = writer.Close()
	}()
	request, err := http.NewRequest(http.MethodPost, server.URL+ReportPath+"?kind="+ReportSBOM, reader)
	if err != nil {
		t.Fatal(err)
	}
	request.Header.Set("Authorization", "Bearer scan-pod")
	response, err := server.Client().Do(request)
	if err != nil {
		t.Fatal(err)
	}
	_ = response.Body.Close()
	if response.StatusCode != http.StatusNoContent || !w.store.Has(testDigest) {
		t.Errorf("answer %d, SBOM stored %v; want the report stored", response.StatusCode, w.store.Has(testDigest))
	}
}
