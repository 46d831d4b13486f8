package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// review is an AdmissionReview of a Pod that runs image, created in namespace shop; mutate edits
// its request (a JSON object) before it is encoded.
func review(t *testing.T, image string, mutate func(request map[string]any)) []byte {
	t.Helper()
	request := map[string]any{
		"uid":       "7b1e",
		"kind":      map[string]any{"version": "v1", "kind": "Pod"},
		"namespace": "shop",
		"operation": "CREATE",
		"userInfo":  map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller"},
		"object": map[string]any{
			"metadata": map[string]any{"name": "api", "namespace": "shop"},
			"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": image}}},
		},
	}
	if mutate != nil {
		mutate(request)
	}
	body, err := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// padded is body with spaces after it (still the same JSON) up to size bytes.
func padded(body []byte, size int) []byte {
	return append(body, bytes.Repeat([]byte(" "), size-len(body))...)
}

func TestAdmissionRequestsAreCountedByOutcome(t *testing.T) {
	tests := []struct {
		name        string
		body        func(t *testing.T) []byte
		want        string
		wantRecords int
	}{
		{name: "a Pod", want: outcomeRecorded, wantRecords: 1,
			body: func(t *testing.T) []byte { return review(t, "registry.example/shop/api:1.4", nil) }},
		{name: "a Pod without images", want: outcomeNoImages,
			body: func(t *testing.T) []byte { return review(t, "", nil) }},
		{name: "a dry run", want: outcomeDryRun,
			body: func(t *testing.T) []byte {
				return review(t, "registry.example/shop/api:1.4", func(r map[string]any) { r["dryRun"] = true })
			}},
		{name: "a request that says it is no dry run", want: outcomeRecorded, wantRecords: 1,
			body: func(t *testing.T) []byte {
				return review(t, "registry.example/shop/api:1.4", func(r map[string]any) { r["dryRun"] = false })
			}},
		{name: "a delete", want: outcomeOperation,
			body: func(t *testing.T) []byte {
				return review(t, "registry.example/shop/api:1.4", func(r map[string]any) { r["operation"] = "DELETE" })
			}},
		{name: "Vigil's own namespace", want: outcomeSelf,
			body: func(t *testing.T) []byte {
				return review(t, "registry.example/shop/api:1.4", func(r map[string]any) { r["namespace"] = "vigil-system" })
			}},
		{name: "Vigil's own service account elsewhere", want: outcomeSelf,
			body: func(t *testing.T) []byte {
				return review(t, "registry.example/shop/api:1.4", func(r map[string]any) {
					r["userInfo"] = map[string]any{"username": "system:serviceaccount:vigil-system:vigil"}
				})
			}},
		{name: "another service account of Vigil's namespace is observed", want: outcomeRecorded, wantRecords: 1,
			body: func(t *testing.T) []byte {
				return review(t, "registry.example/shop/api:1.4", func(r map[string]any) {
					r["userInfo"] = map[string]any{"username": "system:serviceaccount:vigil-system:other"}
				})
			}},
		{name: "a kind without a pod spec", want: outcomeUnknownKind,
			body: func(t *testing.T) []byte {
				return review(t, "registry.example/shop/api:1.4", func(r map[string]any) { r["kind"] = map[string]any{"version": "v1", "kind": "ConfigMap"} })
			}},
		{name: "a malformed Pod", want: outcomeMalformed,
			body: func(t *testing.T) []byte {
				return review(t, "registry.example/shop/api:1.4", func(r map[string]any) { r["object"] = map[string]any{"spec": []any{}} })
			}},
		{name: "a body of exactly the bound is read whole", want: outcomeRecorded, wantRecords: 1,
			body: func(t *testing.T) []byte {
				return padded(review(t, "registry.example/shop/api:1.4", nil), MaxRequestBytes)
			}},
		{name: "a body one byte above the bound is not looked at", want: outcomeTooLarge,
			body: func(t *testing.T) []byte {
				return padded(review(t, "registry.example/shop/api:1.4", nil), MaxRequestBytes+1)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body(t)
			before := testutil.ToFloat64(requestsTotal.WithLabelValues(tc.want))
			q := &queue{}
			recorder := httptest.NewRecorder()
			NewImageObserver(q, "vigil-system", "vigil", 1).ServeHTTP(recorder, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body)))
			if recorder.Code != http.StatusOK {
				t.Fatalf("status %d", recorder.Code)
			}
			if got := testutil.ToFloat64(requestsTotal.WithLabelValues(tc.want)) - before; got != 1 {
				t.Errorf("the %s count rose by %v, want 1", tc.want, got)
			}
			if len(q.records) != tc.wantRecords {
				t.Errorf("records %+v, want %d", q.records, tc.wantRecords)
			}
		})
	}
}
