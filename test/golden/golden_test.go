package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// recorder is a TB that records what Assert reports.
type recorder struct {
	fatal, errors, skips []string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = append(r.fatal, fmt.Sprintf(format, args...))
}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skips = append(r.skips, fmt.Sprintf(format, args...))
}

func TestAssert(t *testing.T) {
	tests := []struct {
		name       string
		update, ci string
		file       string
		got        string
		wantFile   string
		wantFatal  bool
		wantError  bool
		wantSkip   bool
	}{
		{name: "equal", file: "a\n", got: "a\n", wantFile: "a\n"},
		{name: "different", file: "a\n", got: "b\n", wantFile: "a\n", wantError: true},
		{name: "update writes and does not compare", update: "1", file: "a\n", got: "b\n", wantFile: "b\n", wantSkip: true},
		{name: "update refused in CI", update: "1", ci: "true", file: "a\n", got: "b\n", wantFile: "a\n", wantFatal: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("UPDATE_GOLDEN", tc.update)
			t.Setenv("CI", tc.ci)
			path := filepath.Join(t.TempDir(), "x.golden")
			if err := os.WriteFile(path, []byte(tc.file), 0o644); err != nil {
				t.Fatal(err)
			}
			r := &recorder{}
			Assert(r, path, tc.got, Differs(path, tc.got))
			if (len(r.fatal) > 0) != tc.wantFatal || (len(r.errors) > 0) != tc.wantError || (len(r.skips) > 0) != tc.wantSkip {
				t.Errorf("fatal %q, errors %q, skips %q; want fatal %v, error %v, skip %v", r.fatal, r.errors, r.skips, tc.wantFatal, tc.wantError, tc.wantSkip)
			}
			content, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(content) != tc.wantFile {
				t.Errorf("the golden file holds %q, want %q", content, tc.wantFile)
			}
		})
	}
}
