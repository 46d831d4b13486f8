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
	if state, _ := e.Check(context.Background(), testDigest, "", 1); state != Lost {
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
			s, err := e.Check(context.Background(), testDigest, "", attempt)
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
		if state, _ := e.Check(ctx, testDigest, "", 3); state == Lost {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Error("a finished attempt is still running")
}

// timedOutcomes fails the first failures recordings and notes when each was tried.
type timedOutcomes struct {
	failures int
	tries    []time.Time
}

func (o *timedOutcomes) RecordOutcome(context.Context, Outcome) error {
	o.tries = append(o.tries, time.Now())
	if len(o.tries) <= o.failures {
		return errors.New("the API server is unavailable")
	}
	return nil
}

func TestAnOutcomeThatCannotBeRecordedIsTriedAgainWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		recorder := &timedOutcomes{failures: 9}
		e := NewInProcess(nil, sbom.Options{}, 1, time.Minute, recorder)
		e.record(context.Background(), Outcome{Digest: testDigest, Attempt: 1})
		if len(recorder.tries) != 10 {
			t.Fatalf("tried %d times, want until the tenth try succeeds", len(recorder.tries))
		}
		var gaps []time.Duration
		for i := 1; i < len(recorder.tries); i++ {
			gaps = append(gaps, recorder.tries[i].Sub(recorder.tries[i-1]))
		}
		// 100 ms, doubled after each failure, at most 10 s: no hot loop against an API server
		// that is down, and no wait longer than 10 s once it is back.
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
			1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 10 * time.Second, 10 * time.Second}
		for i := range want {
			if gaps[i] != want[i] {
				t.Fatalf("waits between tries %v, want %v", gaps, want)
			}
		}
	})
}

func TestAnOutcomeRecordedAlreadyIsNotTriedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		e := NewInProcess(nil, sbom.Options{}, 1, time.Minute, outcomeFunc(func() error { calls++; return ErrStaleAttempt }))
		e.record(context.Background(), Outcome{Digest: testDigest, Attempt: 1})
		if calls != 1 {
			t.Errorf("tried %d times, want once: a stale attempt's outcome is not wanted", calls)
		}
	})
}

// outcomeFunc is an OutcomeRecorder of one function.
type outcomeFunc func() error

func (f outcomeFunc) RecordOutcome(context.Context, Outcome) error { return f() }

func TestRecordingAnOutcomeStopsWithTheManager(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := NewInProcess(nil, sbom.Options{}, 1, time.Minute, outcomeFunc(func() error { return errors.New("the API server is unavailable") }))
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.record(ctx, Outcome{Digest: testDigest, Attempt: 1})
		}()
		time.Sleep(time.Minute)
		select {
		case <-done:
			t.Fatal("recording gave up while the manager runs")
		default:
		}
		stop()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Error("recording goes on after the manager stopped")
		}
	})
}
