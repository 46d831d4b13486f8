package webhook

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// heldBody is a request body that is read only after release is closed.
type heldBody struct {
	release chan struct{}
	body    io.Reader
}

func (b *heldBody) Read(p []byte) (int, error) {
	<-b.release
	return b.body.Read(p)
}

func TestARequestThatFindsEverySlotBusyWaitsBrieflyForOne(t *testing.T) {
	tests := []struct {
		name         string
		busyFor      time.Duration
		wantRecorded int
		wantShed     float64
	}{
		{name: "a slot freed within the wait serves it", busyFor: shedAfter / 2, wantRecorded: 2},
		{name: "a slot still busy after the wait sheds it", busyFor: 2 * shedAfter, wantRecorded: 1, wantShed: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := &queue{}
				observer := NewImageObserver(q, "vigil-system", "vigil", 1)
				shedBefore := testutil.ToFloat64(requestsTotal.WithLabelValues(outcomeShed))
				held := &heldBody{release: make(chan struct{}), body: bytes.NewReader(review(t, "registry.example/shop/api:1.4", nil))}
				go observer.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, Path, held))
				synctest.Wait() // the first request holds the only slot
				second := make(chan struct{})
				go func() {
					defer close(second)
					observer.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, Path,
						bytes.NewReader(review(t, "registry.example/shop/worker:3", nil))))
				}()
				time.Sleep(tc.busyFor)
				close(held.release)
				<-second
				synctest.Wait()
				if len(q.records) != tc.wantRecorded {
					t.Errorf("recorded %+v, want %d records", q.records, tc.wantRecorded)
				}
				if got := testutil.ToFloat64(requestsTotal.WithLabelValues(outcomeShed)) - shedBefore; got != tc.wantShed {
					t.Errorf("shed %v requests, want %v", got, tc.wantShed)
				}
			})
		})
	}
}

func TestAServedRequestIsReadWithinTheDefaultReadTimeout(t *testing.T) {
	q := &queue{}
	server := httptest.NewServer(NewImageObserver(q, "vigil-system", "vigil", 1))
	defer server.Close()
	// Larger than the server's read buffer, so that the body is read from the connection after
	// the observer sets its deadline.
	body := padded(review(t, "registry.example/shop/api:1.4", nil), 1<<20)
	response, err := server.Client().Post(server.URL+Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_ = response.Body.Close()
	if response.StatusCode != http.StatusOK || len(q.records) != 1 {
		t.Errorf("status %d with records %+v, want the image recorded", response.StatusCode, q.records)
	}
}
