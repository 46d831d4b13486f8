package dbupdate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// call is one use of the store: an update check, or the import of the archive as it was then.
type call struct {
	op      string
	modTime time.Time
}

// fakeStore records what the Updater asks of it, and fails the calls that fail says.
type fakeStore struct {
	// op is the only call expected: "update" or "import".
	op string
	// logs is where the updater logs, and forbidden what it must never log: an update never
	// reads an archive, an import never checks the listing.
	logs      *logRecorder
	forbidden string
	fail      func(n int) error // the error of the nth call, from 1; nil means success

	mu    sync.Mutex
	calls []call
}

func newFakeStore(op string, logs *logRecorder, fail func(n int) error) *fakeStore {
	if fail == nil {
		fail = func(int) error { return nil }
	}
	forbidden := "update failed"
	if op == "update" {
		forbidden = "archive"
	}
	return &fakeStore{op: op, logs: logs, forbidden: forbidden, fail: fail}
}

// failFirst fails the first call with err.
func failFirst(err error) func(n int) error {
	return func(n int) error {
		if n == 1 {
			return err
		}
		return nil
	}
}

func (s *fakeStore) record(c call) error {
	s.mu.Lock()
	s.calls = append(s.calls, c)
	n := len(s.calls)
	s.mu.Unlock()
	return s.fail(n)
}

func (s *fakeStore) Update(context.Context) (bool, error) {
	err := s.record(call{op: "update"})
	return err == nil, err
}

func (s *fakeStore) Import(_ context.Context, path string) error {
	var modTime time.Time
	if info, err := os.Stat(path); err == nil {
		modTime = info.ModTime()
	}
	return s.record(call{op: "import", modTime: modTime})
}

func (s *fakeStore) Calls() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// waitUntil waits until done is true, and fails at once when the store was asked for anything
// but its op or the updater logged what it must not.
func (s *fakeStore) waitUntil(t *testing.T, what string, done func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !done() {
		for _, c := range s.Calls() {
			if c.op != s.op {
				t.Fatalf("the updater called %s, want only %s: %+v", c.op, s.op, s.Calls())
			}
		}
		if s.logs.count(s.forbidden) > 0 {
			t.Fatalf("the updater logged %q", s.logs.all())
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: the store had calls %+v", what, s.Calls())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitForCalls waits until the store has had n calls.
func (s *fakeStore) waitForCalls(t *testing.T, n int) {
	t.Helper()
	s.waitUntil(t, fmt.Sprintf("%d calls", n), func() bool { return len(s.Calls()) >= n })
}

// logRecorder keeps the error messages logged through the context's logger.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecorder) into(ctx context.Context) context.Context {
	return log.IntoContext(ctx, funcr.New(func(_, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, args)
		l.mu.Unlock()
	}, funcr.Options{}))
}

// count is the number of lines logged that hold text.
func (l *logRecorder) count(text string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, text) {
			n++
		}
	}
	return n
}

// all is every line logged.
func (l *logRecorder) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// start runs updater, logging into logs, until the test stops it; stop returns Start's error.
func start(t *testing.T, logs *logRecorder, updater *Updater) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(logs.into(t.Context()))
	done := make(chan error, 1)
	go func() { done <- updater.Start(ctx) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("the updater did not stop with its context")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestTheUpdaterRunsOnTheLeaderOnly(t *testing.T) {
	if !(&Updater{}).NeedLeaderElection() {
		t.Error("every replica would update the database")
	}
}

func TestTheUpdaterChecksTheListing(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		fail     func(n int) error
		// calls is how many checks to wait for; each one is an update, never an import.
		calls      int
		wantErrors int
	}{
		{
			name: "it checks at once, before the first interval ends", interval: time.Hour,
			calls: 1,
		},
		{
			name: "it checks again every interval", interval: time.Millisecond,
			calls: 3,
		},
		{
			name: "a failed check is logged and the next interval checks again", interval: time.Millisecond,
			fail:  failFirst(errors.New("listing unavailable")),
			calls: 2, wantErrors: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logRecorder{}
			store := newFakeStore("update", logs, tc.fail)
			stop := start(t, logs, &Updater{Store: store, Interval: tc.interval})
			store.waitForCalls(t, tc.calls)
			if err := stop(); err != nil {
				t.Errorf("Start returned %v when its context ended", err)
			}
			if got := logs.count(`"msg"="Vulnerability database update failed; the current database stays in use" "error"="listing unavailable"`); got != tc.wantErrors {
				t.Errorf("%d failed checks logged, want %d: %q", got, tc.wantErrors, logs.all())
			}
		})
	}
}

func TestTheUpdaterImportsTheArchiveWhenItChanges(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "vulnerability-db.tar.zst")
	first := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	second := first.Add(time.Hour)
	logs := &logRecorder{}
	store := newFakeStore("import", logs, nil)
	stop := start(t, logs, &Updater{Store: store, Interval: time.Millisecond, ImportFile: archive})

	// An archive that is not there yet is reported, and nothing is imported.
	cannotRead := `"msg"="Cannot read the vulnerability database archive to import"`
	store.waitUntil(t, "the missing archive reported", func() bool { return logs.count(cannotRead) > 0 })
	if calls := store.Calls(); len(calls) != 0 {
		t.Fatalf("the store was called without an archive: %+v", calls)
	}

	// Once it is there, it is imported. It appears whole with its time, as an archive renamed
	// into place does: written in place, the updater could see it before its time is set.
	written := archive + ".new"
	if err := os.WriteFile(written, []byte("archive"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(written, first, first); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(written, archive); err != nil {
		t.Fatal(err)
	}
	store.waitForCalls(t, 1)

	// While it stays the same it is not imported again: the updater looks at it every
	// millisecond, so it has looked many times by the time it changes; then the new archive is
	// imported, once.
	time.Sleep(100 * time.Millisecond)
	if err := os.Chtimes(archive, second, second); err != nil {
		t.Fatal(err)
	}
	store.waitForCalls(t, 2)
	if err := stop(); err != nil {
		t.Errorf("Start returned %v when its context ended", err)
	}
	want := []call{{op: "import", modTime: first}, {op: "import", modTime: second}}
	if calls := store.Calls(); !slices.EqualFunc(calls, want, func(a, b call) bool { return a.op == b.op && a.modTime.Equal(b.modTime) }) {
		t.Errorf("calls %+v, want %+v", calls, want)
	}
	if n := logs.count(`"msg"="Importing`); n != 0 {
		t.Errorf("%d failed imports logged, want none", n)
	}
}

func TestAFailedImportIsLoggedAndTriedAgain(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "vulnerability-db.tar.zst")
	if err := os.WriteFile(archive, []byte("archive"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logRecorder{}
	store := newFakeStore("import", logs, failFirst(errors.New("checksum mismatch")))
	stop := start(t, logs, &Updater{Store: store, Interval: time.Millisecond, ImportFile: archive})
	store.waitForCalls(t, 2)
	if err := stop(); err != nil {
		t.Errorf("Start returned %v when its context ended", err)
	}
	if calls := store.Calls(); !calls[1].modTime.Equal(calls[0].modTime) {
		t.Errorf("calls %+v, want the same archive imported twice", calls)
	}
	if n := logs.count(`"msg"="Importing the vulnerability database failed; the current database stays in use" "error"="checksum mismatch"`); n != 1 {
		t.Errorf("%d failed imports logged, want 1: %q", n, logs.all())
	}
}
