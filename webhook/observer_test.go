package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/vigil-dev/vigil/pkg/recorder"
)

// queue is an Enqueuer that keeps what it is given.
type queue struct {
	mu      sync.Mutex
	records []recorder.ImageRecord
}

func (q *queue) Enqueue(record recorder.ImageRecord) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.records = append(q.records, record)
	return true
}

func podReview(mutate func(*admissionv1.AdmissionRequest)) []byte {
	pod, _ := json.Marshal(corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "shop"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/shop/api:1.4"}}},
	})
	request := &admissionv1.AdmissionRequest{
		UID:       types.UID("3f2c"),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "shop",
		Operation: admissionv1.Create,
		UserInfo:  authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller"},
		Object:    runtime.RawExtension{Raw: pod},
	}
	if mutate != nil {
		mutate(request)
	}
	review, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  request,
	})
	return review
}

func TestObserverAlwaysAllows(t *testing.T) {
	tests := []struct {
		name        string
		body        []byte
		wantUID     string
		wantRecords int
	}{
		{name: "a Pod", body: podReview(nil), wantUID: "3f2c", wantRecords: 1},
		{name: "an update", body: podReview(func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }), wantUID: "3f2c", wantRecords: 1},
		{name: "a dry run", body: podReview(func(r *admissionv1.AdmissionRequest) { r.DryRun = ptr.To(true) }), wantUID: "3f2c"},
		{name: "a delete", body: podReview(func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Delete }), wantUID: "3f2c"},
		{name: "Vigil's own namespace", body: podReview(func(r *admissionv1.AdmissionRequest) { r.Namespace = "vigil-system" }), wantUID: "3f2c"},
		{name: "Vigil's own service account", body: podReview(func(r *admissionv1.AdmissionRequest) {
			r.UserInfo.Username = "system:serviceaccount:vigil-system:vigil"
		}), wantUID: "3f2c"},
		{name: "a kind without a pod spec", body: podReview(func(r *admissionv1.AdmissionRequest) {
			r.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}
		}), wantUID: "3f2c"},
		{name: "no object", body: podReview(func(r *admissionv1.AdmissionRequest) { r.Object = runtime.RawExtension{} }), wantUID: "3f2c"},
		{name: "a malformed object", body: podReview(func(r *admissionv1.AdmissionRequest) { r.Object = runtime.RawExtension{Raw: []byte(`{"spec":[]}`)} }), wantUID: "3f2c"},
		{name: "bad JSON", body: []byte(`{"request":`)},
		{name: "no request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`)},
		{name: "an empty body", body: nil},
		{name: "a body above the bound", body: bytes.Repeat([]byte(" "), MaxRequestBytes+1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := &queue{}
			observer := NewImageObserver(q, "vigil-system", "vigil", 4)
			recorder := httptest.NewRecorder()
			observer.ServeHTTP(recorder, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(tc.body)))
			if recorder.Code != http.StatusOK {
				t.Fatalf("status %d", recorder.Code)
			}
			var review admissionv1.AdmissionReview
			if err := json.Unmarshal(recorder.Body.Bytes(), &review); err != nil {
				t.Fatalf("answer is not an AdmissionReview: %v: %s", err, recorder.Body.String())
			}
			if review.Response == nil || !review.Response.Allowed || string(review.Response.UID) != tc.wantUID || review.Response.Patch != nil {
				t.Errorf("answer = %s", recorder.Body.String())
			}
			if review.APIVersion != "admission.k8s.io/v1" || review.Kind != "AdmissionReview" {
				t.Errorf("answer type = %s %s", review.APIVersion, review.Kind)
			}
			if len(q.records) != tc.wantRecords {
				t.Errorf("records = %+v, want %d", q.records, tc.wantRecords)
			}
		})
	}
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

func TestObserverShedsBeyondItsConcurrencyWithoutReadingTheBody(t *testing.T) {
	q := &queue{}
	observer := NewImageObserver(q, "vigil-system", "vigil", 1)
	observer.inflight <- struct{}{} // one request is being looked into
	recorder := httptest.NewRecorder()
	body := &countingReader{r: bytes.NewReader(podReview(nil))}
	observer.ServeHTTP(recorder, httptest.NewRequest(http.MethodPost, Path, body))
	if !strings.Contains(recorder.Body.String(), `"allowed":true`) || len(q.records) != 0 {
		t.Errorf("answer %s, records %v", recorder.Body.String(), q.records)
	}
	if body.read != 0 {
		t.Errorf("a request beyond the concurrency bound had %d bytes of its body read", body.read)
	}
}

func TestABodyDeclaredAboveTheBoundIsNotRead(t *testing.T) {
	q := &queue{}
	observer := NewImageObserver(q, "vigil-system", "vigil", 1)
	recorder := httptest.NewRecorder()
	body := &countingReader{r: bytes.NewReader(bytes.Repeat([]byte(" "), MaxRequestBytes+1))}
	request := httptest.NewRequest(http.MethodPost, Path, body)
	request.ContentLength = MaxRequestBytes + 1
	observer.ServeHTTP(recorder, request)
	if !strings.Contains(recorder.Body.String(), `"allowed":true`) || len(q.records) != 0 {
		t.Errorf("answer %s, records %v", recorder.Body.String(), q.records)
	}
	if body.read != 0 {
		t.Errorf("a body declared above the bound had %d bytes read", body.read)
	}
	if len(observer.inflight) != 0 {
		t.Error("the request kept a concurrency slot")
	}
}

func TestBodiesOfUndeclaredLengthAreReadUpToTheBound(t *testing.T) {
	for _, tc := range []struct {
		name        string
		body        []byte
		wantRecords int
	}{
		{"a review", podReview(nil), 1},
		{"a review after one above the bound", podReview(nil), 1},
		{"a body above the bound", bytes.Repeat([]byte(" "), MaxRequestBytes+1), 0},
		{"a review after it", podReview(nil), 1},
	} {
		q := &queue{}
		observer := NewImageObserver(q, "vigil-system", "vigil", 1)
		request := httptest.NewRequest(http.MethodPost, Path, io.NopCloser(bytes.NewReader(tc.body)))
		request.ContentLength = -1
		recorder := httptest.NewRecorder()
		observer.ServeHTTP(recorder, request)
		if len(q.records) != tc.wantRecords || !strings.Contains(recorder.Body.String(), `"allowed":true`) {
			t.Errorf("%s: records %v, answer %s", tc.name, q.records, recorder.Body.String())
		}
	}
}

func TestBodiesWaitForTheirBytesInFlight(t *testing.T) {
	q := &queue{}
	observer := NewImageObserver(q, "vigil-system", "vigil", 64)
	// Large bodies being read hold all but 1 MiB of the budget.
	if !observer.bodyBytes.TryAcquire(MaxBodyBytesInFlight - 1<<20) {
		t.Fatal("the budget is taken")
	}
	// A body of undeclared length may be up to MaxRequestBytes: it is shed, unread.
	chunked := &countingReader{r: bytes.NewReader(podReview(nil))}
	request := httptest.NewRequest(http.MethodPost, Path, chunked)
	request.ContentLength = -1
	recorder := httptest.NewRecorder()
	observer.ServeHTTP(recorder, request)
	if chunked.read != 0 || len(q.records) != 0 || !strings.Contains(recorder.Body.String(), `"allowed":true`) {
		t.Errorf("a chunked body beyond the budget: %d bytes read, records %v, answer %s", chunked.read, q.records, recorder.Body.String())
	}
	// The API server's request of a few KiB declares its length and fits.
	observer.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(podReview(nil))))
	if len(q.records) != 1 {
		t.Errorf("a small request within the budget was not examined: records %v", q.records)
	}
	// Its bytes are given back.
	observer.bodyBytes.Release(MaxBodyBytesInFlight - 1<<20)
	if !observer.bodyBytes.TryAcquire(MaxBodyBytesInFlight) {
		t.Error("the examined request kept its bytes")
	}
}

// slowBody sends part of a review, then nothing, until the test ends.
type slowBody struct {
	sent bool
	stop chan struct{}
}

func (b *slowBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, `{"request":{"uid":"slow"`), nil
	}
	<-b.stop
	return 0, io.EOF
}

func TestAClientThatTricklesItsBodyIsAnsweredWithinTheReadTimeout(t *testing.T) {
	previous := ReadTimeout
	ReadTimeout = 200 * time.Millisecond
	defer func() { ReadTimeout = previous }()
	observer := NewImageObserver(&queue{}, "vigil-system", "vigil", 1)
	server := httptest.NewServer(observer)
	defer server.Close()
	body := &slowBody{stop: make(chan struct{})}
	defer close(body.stop)
	request, err := http.NewRequest(http.MethodPost, server.URL+Path, body)
	if err != nil {
		t.Fatal(err)
	}
	request.ContentLength = 7 << 20
	done := make(chan error, 1)
	go func() {
		response, err := http.DefaultClient.Do(request)
		if err == nil {
			_ = response.Body.Close()
		}
		done <- err
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the trickling request still holds the handler after 5 seconds")
	}
	// Its slot is free again: the next request is examined, not shed.
	q := &queue{}
	observer.enqueuer = q
	recorder := httptest.NewRecorder()
	observer.ServeHTTP(recorder, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(podReview(nil))))
	if len(q.records) != 1 {
		t.Errorf("the next request was not examined: %s", recorder.Body.String())
	}
}
