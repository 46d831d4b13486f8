package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vigil-dev/vigil/pkg/digest"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/sbomstore"
)

// ReportPath is where the manager receives scan Job reports.
const ReportPath = "/v1/scan-reports"

// Report is what a scan Job sends: the SBOM of its digest, or why it has none.
type Report struct {
	Digest string `json:"digest"`
	// SBOM is the image's SBOM in syft JSON.
	SBOM json.RawMessage `json:"sbom,omitempty"`
	// Error says why the scan failed; TooLarge tells that the image or SBOM exceeded its bound.
	Error    string `json:"error,omitempty"`
	TooLarge bool   `json:"tooLarge,omitempty"`
	// Unauthorized tells that the registry refused the credentials.
	Unauthorized bool `json:"unauthorized,omitempty"`
}

// ReportHandler receives scan Job reports. A report is accepted only with a service-account
// token of the scan Jobs' service account, for the report audience, bound to a pod of the scan
// Job of the reported digest, as the TokenReview API confirms.
type ReportHandler struct {
	Client client.Client
	Reader client.Reader
	Jobs   *Jobs
	SBOMs  *sbomstore.Store
	// Notify is called with the digest of each accepted report.
	Notify func(digest string)
	// MaxBytes bounds a report's body.
	MaxBytes int64
}

// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create

// ServeHTTP authenticates and stores one report.
func (h *ReportHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	logger := log.FromContext(r.Context())
	if r.Method != http.MethodPost {
		http.Error(w, "POST a report", http.StatusMethodNotAllowed)
		return
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		http.Error(w, "a bearer token is required", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, h.MaxBytes+1))
	if err != nil || int64(len(body)) > h.MaxBytes {
		http.Error(w, fmt.Sprintf("a report is at most %d bytes", h.MaxBytes), http.StatusRequestEntityTooLarge)
		return
	}
	var report Report
	if err := json.Unmarshal(body, &report); err != nil || !digest.IsSHA256(report.Digest) {
		http.Error(w, "the report is not valid JSON with a sha256 digest", http.StatusBadRequest)
		return
	}
	if err := h.authenticate(r, token, report.Digest); err != nil {
		logger.Info("Refused a scan report", "digest", report.Digest, "reason", err.Error())
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	outcome := Outcome{Digest: report.Digest}
	switch {
	case report.Error != "" && report.TooLarge:
		outcome.Err = fmt.Errorf("%s: %w", report.Error, &sbom.TooLargeError{What: "image"})
	case report.Error != "" && report.Unauthorized:
		outcome.Err = fmt.Errorf("%s: %w", report.Error, sbom.ErrUnauthorized)
	case report.Error != "":
		outcome.Err = errors.New(report.Error)
	case len(report.SBOM) == 0:
		http.Error(w, "the report has neither an SBOM nor an error", http.StatusBadRequest)
		return
	default:
		if err := h.SBOMs.Put(report.Digest, report.SBOM); err != nil {
			logger.Error(err, "Storing a reported SBOM failed", "digest", report.Digest)
			http.Error(w, "storing the SBOM failed", http.StatusInternalServerError)
			return
		}
	}
	h.Jobs.report(outcome)
	h.Notify(report.Digest)
	w.WriteHeader(http.StatusNoContent)
}

// authenticate checks that token belongs to a pod of the scan Job of digest.
func (h *ReportHandler) authenticate(r *http.Request, token, reportedDigest string) error {
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{ReportAudience}}}
	if err := h.Client.Create(r.Context(), review); err != nil {
		return fmt.Errorf("reviewing the token: %w", err)
	}
	status := review.Status
	if !status.Authenticated {
		return fmt.Errorf("the token is not valid for %s: %s", ReportAudience, status.Error)
	}
	want := "system:serviceaccount:" + h.Jobs.options.Namespace + ":" + h.Jobs.options.ServiceAccountName
	if status.User.Username != want {
		return fmt.Errorf("the token is of %s, not of the scan Jobs' service account", status.User.Username)
	}
	podNames := status.User.Extra["authentication.kubernetes.io/pod-name"]
	if len(podNames) != 1 {
		return errors.New("the token is not bound to a pod")
	}
	pod := &corev1.Pod{}
	if err := h.Reader.Get(r.Context(), client.ObjectKey{Namespace: h.Jobs.options.Namespace, Name: podNames[0]}, pod); err != nil {
		return fmt.Errorf("reading the token's pod: %w", err)
	}
	if pod.Labels[DigestLabel] != strings.TrimPrefix(reportedDigest, "sha256:")[:63] || pod.Labels[ComponentLabel] != ComponentValue {
		return fmt.Errorf("pod %s is not the scan Job of %s", pod.Name, reportedDigest)
	}
	return nil
}
