package executor

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/sbomstore"
)

// ReportPath is where the manager receives scan Job reports: POST ReportPath?kind=sbom with the
// SBOM (syft JSON) as the body, or ?kind=failure with a Failure.
const ReportPath = "/v1/scan-reports"

// Report kinds, the "kind" query parameter of a report.
const (
	ReportSBOM    = "sbom"
	ReportFailure = "failure"
)

// ImageSizeHeader carries the image's compressed size with an SBOM report.
const ImageSizeHeader = "Vigil-Image-Size"

// ReportReadTimeout bounds the time to read a report's body once its sender is authenticated.
var ReportReadTimeout = 5 * time.Minute

// MaxFailureBytes bounds the body of a failure report.
const MaxFailureBytes = 64 << 10

// Failure is the body of a failure report: why a scan Job has no SBOM.
type Failure struct {
	Error string `json:"error"`
	// TooLarge tells that the image or its SBOM exceeded its bound.
	TooLarge bool `json:"tooLarge,omitempty"`
	// Unauthorized tells that the registry refused the credentials.
	Unauthorized bool `json:"unauthorized,omitempty"`
}

// ReportHandler receives scan Job reports on the elected leader, whose SBOM store the reconciler
// reads: another replica answers 503 before it reads the body, and the Job tries again. A
// report is authenticated from its header alone, before its body is read: a service-account
// token of the scan Jobs' service account, for the report audience, bound to a running pod of a
// running scan Job. What the report is about (digest and attempt) comes from that Job, never
// from the body. Its outcome is persisted through the OutcomeRecorder before the answer; a report
// of an attempt whose outcome is recorded already is refused (409).
type ReportHandler struct {
	// Client creates TokenReviews.
	Client client.Client
	// Reader reads pods and Jobs from the API server.
	Reader client.Reader
	// Namespace and ServiceAccountName are the scan Jobs' own.
	Namespace, ServiceAccountName string
	SBOMs                         *sbomstore.Store
	Outcomes                      OutcomeRecorder
	// IsLeader tells whether this replica is the elected leader.
	IsLeader func() bool
	// MaxSBOMBytes bounds an SBOM report's body; a larger SBOM leaves its image TooLarge.
	MaxSBOMBytes int64

	tokens tokenCache
}

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// ServeHTTP authenticates one report, stores it and records its outcome.
func (h *ReportHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	logger := log.FromContext(r.Context())
	if r.Method != http.MethodPost {
		http.Error(w, "POST a report", http.StatusMethodNotAllowed)
		return
	}
	kind := r.URL.Query().Get("kind")
	if kind != ReportSBOM && kind != ReportFailure {
		http.Error(w, `the kind of a report is "sbom" or "failure"`, http.StatusBadRequest)
		return
	}
	if !h.IsLeader() {
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Connection", "close")
		http.Error(w, "this replica is not the leader; try again", http.StatusServiceUnavailable)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		http.Error(w, "a bearer token is required", http.StatusUnauthorized)
		return
	}
	job, err := h.authenticate(r, token)
	if err != nil {
		logger.Info("Refused a scan report", "reason", err.Error())
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	outcome := Outcome{Digest: job.Annotations[DigestAnnotation]}
	attempt, err := strconv.ParseInt(job.Annotations[AttemptAnnotation], 10, 32)
	if err != nil || outcome.Digest == "" {
		http.Error(w, "the scan Job names no digest and attempt", http.StatusForbidden)
		return
	}
	outcome.Attempt = int32(attempt)

	// An authenticated Job still has a bounded time to send its body.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(ReportReadTimeout))
	if kind == ReportSBOM {
		outcome.ImageSize, _ = strconv.ParseInt(r.Header.Get(ImageSizeHeader), 10, 64)
		body := http.MaxBytesReader(w, r.Body, h.MaxSBOMBytes)
		if err := h.SBOMs.PutFrom(outcome.Digest, body); err != nil {
			var tooLarge *http.MaxBytesError
			if !errors.As(err, &tooLarge) {
				logger.Error(err, "Storing a reported SBOM failed", "digest", outcome.Digest)
				http.Error(w, "storing the SBOM failed", http.StatusInternalServerError)
				return
			}
			outcome.Err = &sbom.TooLargeError{What: "SBOM", Size: tooLarge.Limit + 1, Limit: tooLarge.Limit}
		}
	} else {
		var failure Failure
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxFailureBytes)).Decode(&failure); err != nil || failure.Error == "" {
			http.Error(w, "a failure report is JSON with an error", http.StatusBadRequest)
			return
		}
		outcome.Err = failure.err()
	}
	switch err := h.Outcomes.RecordOutcome(r.Context(), outcome); {
	case errors.Is(err, ErrStaleAttempt):
		http.Error(w, "the outcome of this scan attempt is recorded already", http.StatusConflict)
	case err != nil:
		logger.Error(err, "Recording a reported scan outcome failed", "digest", outcome.Digest)
		http.Error(w, "recording the outcome failed; try again", http.StatusInternalServerError)
	case outcome.Err != nil && errors.As(outcome.Err, new(*sbom.TooLargeError)) && kind == ReportSBOM:
		http.Error(w, outcome.Err.Error(), http.StatusRequestEntityTooLarge)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// err is the failure as the error the scan reconciler classifies.
func (f Failure) err() error {
	switch {
	case f.TooLarge:
		return fmt.Errorf("%s: %w", f.Error, &sbom.TooLargeError{What: "image"})
	case f.Unauthorized:
		return fmt.Errorf("%s: %w", f.Error, sbom.ErrUnauthorized)
	default:
		return errors.New(f.Error)
	}
}

// authenticate returns the running scan Job whose running pod the token is bound to.
func (h *ReportHandler) authenticate(r *http.Request, token string) (*batchv1.Job, error) {
	identity, err := h.review(r, token)
	if err != nil {
		return nil, err
	}
	pod := &corev1.Pod{}
	if err := h.Reader.Get(r.Context(), client.ObjectKey{Namespace: h.Namespace, Name: identity.podName}, pod); err != nil {
		return nil, fmt.Errorf("reading the token's pod: %w", err)
	}
	if pod.UID != identity.podUID {
		return nil, fmt.Errorf("the token's pod %s is gone", identity.podName)
	}
	if pod.Labels[ComponentLabel] != ComponentValue || pod.Status.Phase != corev1.PodRunning {
		return nil, fmt.Errorf("pod %s is not a running scan Job pod", pod.Name)
	}
	owner := metav1.GetControllerOf(pod)
	if owner == nil || owner.Kind != "Job" {
		return nil, fmt.Errorf("pod %s belongs to no Job", pod.Name)
	}
	job := &batchv1.Job{}
	if err := h.Reader.Get(r.Context(), client.ObjectKey{Namespace: h.Namespace, Name: owner.Name}, job); err != nil {
		return nil, fmt.Errorf("reading the scan Job of pod %s: %w", pod.Name, err)
	}
	if job.UID != owner.UID || job.Labels[ComponentLabel] != ComponentValue {
		return nil, fmt.Errorf("the Job of pod %s is not a scan Job", pod.Name)
	}
	for _, condition := range job.Status.Conditions {
		if (condition.Type == batchv1.JobComplete || condition.Type == batchv1.JobFailed) && condition.Status == corev1.ConditionTrue {
			return nil, fmt.Errorf("scan Job %s has ended", job.Name)
		}
	}
	return job, nil
}

// identity is who a token authenticates: a pod of the scan Jobs' service account.
type identity struct {
	podName string
	podUID  types.UID
}

// review authenticates token with a TokenReview for the report audience; answers are kept
// briefly, so that the retries of one Job cost one review.
func (h *ReportHandler) review(r *http.Request, token string) (identity, error) {
	key := sha256.Sum256([]byte(token))
	if cached, ok := h.tokens.get(key, time.Now()); ok {
		return cached, nil
	}
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{ReportAudience}}}
	if err := h.Client.Create(r.Context(), review); err != nil {
		return identity{}, fmt.Errorf("reviewing the token: %w", err)
	}
	status := review.Status
	if !status.Authenticated {
		return identity{}, fmt.Errorf("the token is not valid for %s: %s", ReportAudience, status.Error)
	}
	want := "system:serviceaccount:" + h.Namespace + ":" + h.ServiceAccountName
	if status.User.Username != want {
		return identity{}, fmt.Errorf("the token is of %s, not of the scan Jobs' service account", status.User.Username)
	}
	names, uids := status.User.Extra["authentication.kubernetes.io/pod-name"], status.User.Extra["authentication.kubernetes.io/pod-uid"]
	if len(names) != 1 || len(uids) != 1 {
		return identity{}, errors.New("the token is not bound to a pod")
	}
	found := identity{podName: names[0], podUID: types.UID(uids[0])}
	h.tokens.put(key, found, time.Now())
	return found, nil
}

// tokenCacheTTL is how long a token's review is kept, and tokenCacheSize how many are kept.
const (
	tokenCacheTTL  = 30 * time.Second
	tokenCacheSize = 1024
)

// tokenCache keeps recent token reviews by the token's SHA-256.
type tokenCache struct {
	mu      sync.Mutex
	entries map[[32]byte]cachedIdentity
}

type cachedIdentity struct {
	identity identity
	expires  time.Time
}

func (c *tokenCache) get(key [32]byte, now time.Time) (identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entry, ok := c.entries[key]
	if !ok || now.After(entry.expires) {
		return identity{}, false
	}
	return entry.identity, true
}

func (c *tokenCache) put(key [32]byte, id identity, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= tokenCacheSize {
		c.entries = map[[32]byte]cachedIdentity{} // a full cache starts over: reviews are cheap
	}
	c.entries[key] = cachedIdentity{identity: id, expires: now.Add(tokenCacheTTL)}
}
