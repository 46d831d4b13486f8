package sbomstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStore(t *testing.T) {
	dir := t.TempDir()
	store, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	digest := "sha256:" + strings.Repeat("a", 64)
	if store.Has(digest) {
		t.Fatal("an empty store has an SBOM")
	}
	if _, err := store.Get(digest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get from an empty store: %v", err)
	}
	if err := store.Put(digest, []byte(`{"artifacts":[]}`)); err != nil {
		t.Fatal(err)
	}
	// A store opened again on the same folder, as after a restart, has it.
	reopened, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := reopened.Get(digest)
	if err != nil || string(got) != `{"artifacts":[]}` || !reopened.Has(digest) {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if err := store.Put(digest, []byte(`{"artifacts":[1]}`)); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Get(digest); string(got) != `{"artifacts":[1]}` {
		t.Errorf("Get after a second Put = %q", got)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "sha256"))
	if len(entries) != 1 {
		t.Errorf("the store folder holds %d files, want 1 (no temporary files left)", len(entries))
	}
	for _, bad := range []string{"sha256:xyz", "sha512:" + strings.Repeat("a", 64), "sha256:../../" + strings.Repeat("a", 58)} {
		if err := store.Put(bad, []byte("{}")); err == nil {
			t.Errorf("Put(%q) was accepted", bad)
		}
	}
}
