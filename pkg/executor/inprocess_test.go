package executor

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vigil-dev/vigil/pkg/sbom"
)

// syncOutcomes records outcomes for InProcess, whose scans run on their own goroutines; the
// first failures answers fail with an error that is not ErrStaleAttempt.
type syncOutcomes struct {
	mu       sync.Mutex
	recorded []Outcome
	calls    int
	failures int
}

func (o *syncOutcomes) RecordOutcome(_ context.Context, outcome Outcome) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	if o.calls <= o.failures {
		return errors.New("the API server is unavailable")
	}
	o.recorded = append(o.recorded, outcome)
	return nil
}

func (o *syncOutcomes) outcomes() []Outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Outcome(nil), o.recorded...)
}

func pinned(reference string) []PinnedImage {
	return []PinnedImage{{Reference: reference}}
}

func TestAnInProcessScanWithoutAReferenceIsRefused(t *testing.T) {
	e := NewInProcess(nil, sbom.Options{}, 1, time.Minute, &syncOutcomes{})
	if err := e.Submit(context.Background(), Request{Digest: testDigest, Attempt: 1}); err == nil {
		t.Fatal("Submit accepted a request without a reference to pull")
	}
	if state, _ := e.Check(context.Background(), testDigest, 1); state != Lost {
		t.Errorf("a refused request is %v, want Lost", state)
	}
}

func TestInProcessScansFollowTheirAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		recorder := &syncOutcomes{}
		// No slot: every scan waits for one until its context ends.
		e := NewInProcess(nil, sbom.Options{}, 0, time.Minute, recorder)
		first, stopFirst := context.WithCancel(context.Background())
		if err := e.Submit(first, Request{Digest: testDigest, Attempt: 1, Images: pinned("registry.example/app@" + testDigest)}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		state := func(attempt int32) State {
			s, err := e.Check(context.Background(), testDigest, attempt)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		if got := state(1); got != Running {
			t.Fatalf("a submitted attempt is %v, want Running", got)
		}
		if got := state(2); got != Lost {
			t.Errorf("an attempt never submitted is %v, want Lost", got)
		}

		// A later attempt replaces the first; the first one's end must not forget it.
		second, stopSecond := context.WithCancel(context.Background())
		if err := e.Submit(second, Request{Digest: testDigest, Attempt: 2, Images: pinned("registry.example/app@" + testDigest)}); err != nil {
			t.Fatal(err)
		}
		stopFirst()
		synctest.Wait()
		if got := state(2); got != Running {
			t.Errorf("attempt 2 is %v after attempt 1 ended, want Running", got)
		}
		if got := state(1); got != Lost {
			t.Errorf("the replaced attempt 1 is %v, want Lost", got)
		}

		stopSecond()
		synctest.Wait()
		if got := state(2); got != Lost {
			t.Errorf("attempt 2 is %v after its context ended, want Lost", got)
		}
		if got := recorder.outcomes(); len(got) != 0 {
			t.Errorf("recorded %v for scans stopped with the manager, want nothing: the next leader retries them", got)
		}
	})
}

func TestAnInProcessScanRecordsItsOutcome(t *testing.T) {
	// Nothing listens on port 1 of the loopback address: the pull fails at once.
	reference := "127.0.0.1:1/app@" + testDigest
	recorder := &syncOutcomes{failures: 1}
	e := NewInProcess(nil, sbom.Options{Timeout: 5 * time.Second, Registries: map[string]sbom.RegistryAccess{"127.0.0.1:1": {PlainHTTP: true}}},
		1, time.Minute, recorder)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.Submit(ctx, Request{Digest: testDigest, Attempt: 3, Images: pinned(reference)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for len(recorder.outcomes()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := recorder.outcomes()
	if len(got) != 1 {
		t.Fatalf("recorded %v, want the failed attempt once, after the first recording failed", got)
	}
	if got[0].Digest != testDigest || got[0].Attempt != 3 || got[0].Err == nil {
		t.Errorf("recorded %+v, want attempt 3's failure", got[0])
	}
	for time.Now().Before(deadline) {
		if state, _ := e.Check(ctx, testDigest, 3); state == Lost {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Error("a finished attempt is still running")
}
