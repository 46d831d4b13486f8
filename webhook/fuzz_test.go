package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// FuzzObserve sends arbitrary bodies to the handler: every one must be answered HTTP 200 with an
// AdmissionReview that allows, and nothing may panic.
func FuzzObserve(f *testing.F) {
	f.Add(podReview(nil))
	f.Add([]byte(`{"request":{"uid":"1","kind":{"group":"batch","version":"v1","kind":"CronJob"},"operation":"CREATE","object":{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"image":"a"}]}}}}}}}}`))
	f.Add([]byte(`{"request":{"uid":"2","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"UPDATE","object":{"spec":{"template":null}}}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	observer := NewImageObserver(&queue{}, "vigil-system", "vigil", 8)
	panics := requestsTotal.WithLabelValues(outcomePanic)
	f.Fuzz(func(t *testing.T, body []byte) {
		// ServeHTTP recovers from a panic and allows, as it must in the cluster; the fuzzer still
		// sees it through the panic outcome.
		before := testutil.ToFloat64(panics)
		defer func() {
			if testutil.ToFloat64(panics) != before {
				t.Fatalf("observing %q panicked", body)
			}
		}()
		recorder := httptest.NewRecorder()
		observer.ServeHTTP(recorder, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body)))
		var review admissionv1.AdmissionReview
		if recorder.Code != http.StatusOK || json.Unmarshal(recorder.Body.Bytes(), &review) != nil ||
			review.Response == nil || !review.Response.Allowed {
			t.Fatalf("answer %d %s", recorder.Code, recorder.Body.String())
		}
	})
}

// FuzzExtractImages decodes arbitrary objects of every kind: an error is fine, a panic or an
// image record without an image is not.
func FuzzExtractImages(f *testing.F) {
	f.Add("Pod", []byte(`{"metadata":{"namespace":"a"},"spec":{"containers":[{"image":"x"}],"imagePullSecrets":[{"name":"s"}]}}`))
	f.Add("CronJob", []byte(`{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"initContainers":[{"image":"y"}]}}}}}}`))
	f.Add("Deployment", []byte(`{"spec":{"template":{"spec":{"ephemeralContainers":[{"image":"z"}]}}}}`))
	kinds := map[string]schema.GroupVersionKind{
		"Pod": {Version: "v1", Kind: "Pod"}, "CronJob": {Group: "batch", Version: "v1", Kind: "CronJob"},
		"Deployment": {Group: "apps", Version: "v1", Kind: "Deployment"}, "Job": {Group: "batch", Version: "v1", Kind: "Job"},
	}
	f.Fuzz(func(t *testing.T, kind string, raw []byte) {
		gvk, ok := kinds[kind]
		if !ok {
			gvk = schema.GroupVersionKind{Version: "v1", Kind: kind}
		}
		records, err := ExtractImages(gvk, "default", "workload", raw)
		if err != nil {
			return
		}
		for _, record := range records {
			if record.Image == "" || record.Namespace == "" || record.WorkloadName == "" {
				t.Fatalf("incomplete record %+v", record)
			}
		}
	})
}
