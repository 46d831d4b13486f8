package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vigil-dev/vigil/pkg/recorder"
)

// Path is where the webhook server serves the ImageObserver.
const Path = "/observe-images"

// ReadTimeout bounds the time to read an admission request's body.
var ReadTimeout = 5 * time.Second

// shedAfter is how long a request waits for a concurrency slot before it is answered unexamined.
const shedAfter = 50 * time.Millisecond

// MaxRequestBytes bounds an admission request's body, as the API server bounds objects.
const MaxRequestBytes = 7 << 20

// MaxBodyBytesInFlight bounds the bytes of admission bodies held at once, whatever the
// concurrency: a body reserves its declared length, or MaxRequestBytes when its length is not
// declared (chunked), before it is read. The API server declares the length of its requests,
// which are a few KiB; a flood of large or chunked bodies waits for the budget, and is shed.
const MaxBodyBytesInFlight = 64 << 20

// The webhook configuration. It observes Pods (and ephemeral containers added to them) and the
// pod templates of every workload kind, on create and update. failurePolicy Ignore: a replica
// that does not answer never blocks the cluster. sideEffects NoneOnDryRun: dry-run requests
// record nothing. The namespace selector leaves out Vigil's own namespace (the Helm chart sets
// its name) and namespaces labelled vigil.dev/scanning=disabled.
//
// +kubebuilder:webhook:path=/observe-images,mutating=false,failurePolicy=ignore,sideEffects=NoneOnDryRun,matchPolicy=Equivalent,groups="";apps;batch,resources=pods;pods/ephemeralcontainers;deployments;statefulsets;daemonsets;replicasets;jobs;cronjobs,verbs=create;update,versions=v1,name=images.vigil.dev,admissionReviewVersions=v1,timeoutSeconds=3,patch=`{"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["vigil-system"]},{"key":"vigil.dev/scanning","operator":"NotIn","values":["disabled"]}]}}`

// Enqueuer takes image records off the request path; recorder.Recorder is the one the manager
// uses.
type Enqueuer interface {
	Enqueue(recorder.ImageRecord) bool
}

// ImageObserver is the observe-only admission handler: it answers every request Allowed,
// never patches, and hands the images it sees to an Enqueuer. Malformed, unknown and oversized
// requests are answered Allowed too, with a log line and a metric.
type ImageObserver struct {
	enqueuer Enqueuer
	// ignoreNamespace and ignoreUsername are Vigil's own namespace and service account user,
	// whose requests are not observed.
	ignoreNamespace string
	ignoreUsername  string
	// inflight bounds the requests being looked into at once, and bodyBytes the bytes of their
	// bodies; beyond either, requests are answered without looking.
	inflight  chan struct{}
	bodyBytes *semaphore.Weighted
}

// NewImageObserver returns the handler. namespace and serviceAccount are Vigil's own, whose
// requests are skipped; concurrency bounds the requests examined at once.
func NewImageObserver(enqueuer Enqueuer, namespace, serviceAccount string, concurrency int) *ImageObserver {
	return &ImageObserver{
		enqueuer:        enqueuer,
		ignoreNamespace: namespace,
		ignoreUsername:  "system:serviceaccount:" + namespace + ":" + serviceAccount,
		inflight:        make(chan struct{}, concurrency),
		bodyBytes:       semaphore.NewWeighted(MaxBodyBytesInFlight),
	}
}

// ServeHTTP answers an AdmissionReview. It always answers HTTP 200 with allowed: true.
func (o *ImageObserver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var uid types.UID
	outcome := outcomeMalformed
	defer func() {
		if recovered := recover(); recovered != nil {
			log.FromContext(r.Context()).Error(errors.New("panic"), "Observing an admission request panicked; it is allowed",
				"panic", recovered)
			outcome = outcomePanic
		}
		writeAllowed(w, uid)
		requestsTotal.WithLabelValues(outcome).Inc()
		requestDuration.Observe(time.Since(start).Seconds())
	}()
	// The API server sends a review at once; a client that trickles its body holds a slot for
	// ReadTimeout at most. (A ResponseWriter that cannot set deadlines, in tests, is fine.)
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(ReadTimeout))
	uid, outcome = o.observe(r)
}

// observe reads the request and queues its images; it returns the request's UID and outcome.
func (o *ImageObserver) observe(r *http.Request) (types.UID, string) {
	logger := log.FromContext(r.Context())
	// A body declared above the bound is answered unread, without a slot.
	if r.ContentLength > MaxRequestBytes {
		logger.Info("An admission request is above the size bound; it is allowed unobserved", "bound", MaxRequestBytes)
		return "", outcomeTooLarge
	}
	// The concurrency slot is taken before the body is read, so that a flood of large requests
	// holds at most concurrency bodies in memory at once. A request that finds no slot within a
	// moment is answered without its UID: the API server counts that as a failed call, and
	// failurePolicy Ignore admits the object; the pod watch records its images.
	select {
	case o.inflight <- struct{}{}:
	default:
		wait := time.NewTimer(shedAfter)
		defer wait.Stop()
		select {
		case o.inflight <- struct{}{}:
		case <-wait.C:
			return "", outcomeShed
		}
	}
	defer func() { <-o.inflight }()
	size := r.ContentLength
	if size < 0 {
		size = MaxRequestBytes + 1
	}
	if !o.bodyBytes.TryAcquire(size) {
		wait, cancel := context.WithTimeout(r.Context(), shedAfter)
		defer cancel()
		if err := o.bodyBytes.Acquire(wait, size); err != nil {
			return "", outcomeShed
		}
	}
	defer o.bodyBytes.Release(size)
	body, release, err := readBody(r)
	defer release()
	if err != nil {
		logger.Info("Could not read an admission request; it is allowed", "error", err.Error())
		return "", outcomeMalformed
	}
	if len(body) > MaxRequestBytes {
		logger.Info("An admission request is above the size bound; it is allowed unobserved", "bound", MaxRequestBytes)
		return "", outcomeTooLarge
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		logger.Info("Malformed admission request; it is allowed", "error", errorText(err, "no request"))
		return "", outcomeMalformed
	}
	request := review.Request
	switch {
	case request.DryRun != nil && *request.DryRun:
		return request.UID, outcomeDryRun
	case request.Operation != admissionv1.Create && request.Operation != admissionv1.Update:
		return request.UID, outcomeOperation
	case request.Namespace == o.ignoreNamespace || request.UserInfo.Username == o.ignoreUsername:
		return request.UID, outcomeSelf
	case len(request.Object.Raw) == 0:
		logger.Info("Admission request without an object; it is allowed", "uid", request.UID)
		return request.UID, outcomeMalformed
	}

	kind := schema.GroupVersionKind{Group: request.Kind.Group, Version: request.Kind.Version, Kind: request.Kind.Kind}
	records, err := ExtractImages(kind, request.Namespace, request.Name, request.Object.Raw)
	if errors.Is(err, ErrUnknownKind) {
		logger.Info("Admission request of a kind without a pod spec; it is allowed", "kind", kind.String(), "uid", request.UID)
		return request.UID, outcomeUnknownKind
	}
	if err != nil {
		logger.Info("Malformed object in an admission request; it is allowed", "kind", kind.String(), "uid", request.UID,
			"error", err.Error())
		return request.UID, outcomeMalformed
	}
	if len(records) == 0 {
		return request.UID, outcomeNoImages
	}
	for _, record := range records {
		o.enqueuer.Enqueue(record)
	}
	return request.UID, outcomeRecorded
}

// chunkedBodies holds buffers for bodies of undeclared length, which may be up to
// MaxRequestBytes: read into a reused buffer, a flood of them leaves no garbage of that size
// behind. At most MaxBodyBytesInFlight/MaxRequestBytes are in use at once.
var chunkedBodies = sync.Pool{New: func() any { return new([MaxRequestBytes + 1]byte) }}

// readBody reads a request's body of at most MaxRequestBytes+1 bytes: a declared length into a
// buffer of that length, an undeclared one into a reused buffer. release gives the buffer back
// once the body is no longer used (decoding copies what it keeps).
func readBody(r *http.Request) (body []byte, release func(), err error) {
	if r.ContentLength >= 0 {
		body = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, func() {}, err
		}
		return body, func() {}, nil
	}
	buffer := chunkedBodies.Get().(*[MaxRequestBytes + 1]byte)
	release = func() { chunkedBodies.Put(buffer) }
	n, err := io.ReadFull(r.Body, buffer[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, release, err
	}
	return buffer[:n], release, nil
}

func errorText(err error, otherwise string) string {
	if err != nil {
		return err.Error()
	}
	return otherwise
}

// writeAllowed writes the AdmissionReview that allows the request uid.
func writeAllowed(w http.ResponseWriter, uid types.UID) {
	uidJSON, _ := json.Marshal(string(uid))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":`+
		string(uidJSON)+`,"allowed":true}}`)
}
