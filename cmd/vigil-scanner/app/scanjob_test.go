package app

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/pkg/sbom"
)

// TestAReportIsSentAgainUntilTheLeaderRecordsIt plays a manager of two replicas whose follower
// answers first: the report is sent again on a new connection until it is recorded, its body
// only once the manager has looked at the headers.
func TestAReportIsSentAgainUntilTheLeaderRecordsIt(t *testing.T) {
	var mu sync.Mutex
	var answers = []int{http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusNoContent}
	var bodies [][]byte
	var connections = map[string]bool{}
	server := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		connections[r.RemoteAddr] = true
		if r.URL.Query().Get("kind") != executor.ReportSBOM || r.Header.Get("Authorization") != "Bearer token" ||
			r.Header.Get(executor.ImageSizeHeader) != "4096" {
			http.Error(w, "bad report", http.StatusBadRequest)
			return
		}
		code := answers[0]
		answers = answers[1:]
		if code == http.StatusNoContent {
			body, _ := io.ReadAll(r.Body)
			bodies = append(bodies, body)
		}
		w.WriteHeader(code)
	}))
	defer server.Close()

	dir := t.TempDir()
	tokenFile, caFile := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(tokenFile, []byte("token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw})
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	options := &scanJobOptions{reportURL: server.URL + executor.ReportPath, tokenFile: tokenFile, caFile: caFile, reportTimeout: time.Minute}
	var log bytes.Buffer
	if err := report(context.Background(), options, executor.ReportSBOM, []byte(`{"artifacts":[]}`), 4096, &log); err != nil {
		t.Fatalf("report: %v\n%s", err, log.String())
	}
	if len(answers) != 0 || len(bodies) != 1 || string(bodies[0]) != `{"artifacts":[]}` {
		t.Errorf("answers left %v, bodies recorded %q", answers, bodies)
	}
	if len(connections) != 3 {
		t.Errorf("three tries used %d connections; each try needs its own, so that the Service can pick another replica", len(connections))
	}
}

func TestAReportRefusedForItsCredentialsIsNotSentAgain(t *testing.T) {
	tries := 0
	server := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		tries++
		http.Error(w, "forbidden", http.StatusForbidden)
	}))
	defer server.Close()
	dir := t.TempDir()
	tokenFile, caFile := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
	_ = os.WriteFile(tokenFile, []byte("token"), 0o600)
	_ = os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: server.Certificate().Raw}), 0o600)
	options := &scanJobOptions{reportURL: server.URL + executor.ReportPath, tokenFile: tokenFile, caFile: caFile, reportTimeout: time.Minute}
	if err := report(context.Background(), options, executor.ReportFailure, []byte(`{"error":"x"}`), 0, io.Discard); err == nil || tries != 1 {
		t.Errorf("report = %v after %d tries, want an error after one", err, tries)
	}
}

// TestAFailureIsRefusedCredentialsOnlyWhenEveryReferenceWasRefused: the manager ends a scan at
// once for refused credentials, so one namespace's bogus pull secret must not say so for an
// image that another namespace's reference failed to pull for a reason a retry mends.
func TestAFailureIsRefusedCredentialsOnlyWhenEveryReferenceWasRefused(t *testing.T) {
	refused := fmt.Errorf("pulling a: %w", sbom.ErrUnauthorized)
	reset := errors.New("connection reset")
	tests := []struct {
		name string
		errs []error
		want executor.Failure
	}{
		{"one reference refused", []error{refused},
			executor.Failure{Unauthorized: true, Error: "the registry refused access"}},
		{"every reference refused", []error{refused, refused},
			executor.Failure{Unauthorized: true, Error: "the registry refused access; the registry refused access"}},
		{"one refused, the other reset", []error{refused, reset},
			executor.Failure{Error: "the registry refused access; connection reset"}},
		{"one reset, the other refused", []error{reset, refused},
			executor.Failure{Error: "connection reset; the registry refused access"}},
		{"a too large image", []error{refused, &sbom.TooLargeError{What: "image", Size: 2, Limit: 1}},
			executor.Failure{TooLarge: true, Error: "the registry refused access; " + (&sbom.TooLargeError{What: "image", Size: 2, Limit: 1}).Error()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := failureOf(tc.errs); got != tc.want {
				t.Errorf("failureOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}
