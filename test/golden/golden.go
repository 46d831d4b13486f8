// Package golden compares test output with golden files. With UPDATE_GOLDEN=1 it rewrites the
// files and compares nothing: a run that regenerates a golden file must not also report that it
// matches, so the test is skipped and a second run, without UPDATE_GOLDEN, checks the result.
// In CI (CI set) UPDATE_GOLDEN is refused, so that CI always compares.
package golden

import (
	"fmt"
	"os"
)

// TB is the part of testing.TB that Assert uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Skipf(format string, args ...any)
}

// Updating reports whether this run rewrites golden files (UPDATE_GOLDEN set).
func Updating() bool {
	return os.Getenv("UPDATE_GOLDEN") != ""
}

// Assert compares got with the golden file at path. When they differ it reports an error whose
// message is explain(want) (want is the golden file's content). With UPDATE_GOLDEN set it writes
// got to path and skips the test instead of comparing.
func Assert(t TB, path, got string, explain func(want string) string) {
	t.Helper()
	if Updating() {
		if os.Getenv("CI") != "" {
			t.Fatalf("UPDATE_GOLDEN is set in CI: golden files are compared there, never rewritten")
			return
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil { //nolint:gosec // a file of the repository
			t.Fatalf("writing %s: %v", path, err)
			return
		}
		t.Skipf("Wrote %s (UPDATE_GOLDEN); review the difference and run the test again without UPDATE_GOLDEN", path)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s (UPDATE_GOLDEN=1 writes it): %v", path, err)
		return
	}
	if got != string(want) {
		t.Errorf("%s", explain(string(want)))
	}
}

// Differs is the default explanation of a difference: the file and both contents.
func Differs(path, got string) func(want string) string {
	return func(want string) string {
		return fmt.Sprintf("the output differs from %s:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
