package scanengine

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v6distribution "github.com/anchore/grype/grype/db/v6/distribution"

	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/vulndb"
	"github.com/vigil-dev/vigil/test/fixtures/fixturedb"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/testenv"
)

// advisorySources are the base advisory fixtures and, with update, the overlay that adds
// CVE-2023-4911 (glibc, Debian 12).
func advisorySources(t *testing.T, update bool) []string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	sources := []string{filepath.Join(root, "test", "fixtures", "advisories")}
	if update {
		sources = append(sources, filepath.Join(root, "test", "fixtures", "advisories-update"))
	}
	return sources
}

// builds gives each database the tests publish a build time a second after the one before, so
// that a later database is newer without waiting for the clock.
var builds = fixturedb.NewBuildClock(time.Now())

// publish builds a database and writes it as the distribution served from dir.
func publish(t *testing.T, dir string, update bool) *fixturedb.Database {
	t.Helper()
	built, err := fixturedb.Build(t.TempDir(), builds.Next(), advisorySources(t, update)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := built.Package(dir); err != nil {
		t.Fatal(err)
	}
	return built
}

// rewriteListing edits the served listing document.
func rewriteListing(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, v6distribution.LatestFileName)
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var listing map[string]any
	if err := json.Unmarshal(content, &listing); err != nil {
		t.Fatal(err)
	}
	edit(listing)
	if content, err = json.Marshal(listing); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// debianSBOM is the syft JSON of the Debian fixture image.
func debianSBOM(t *testing.T) []byte {
	t.Helper()
	img, err := images.DebianOpenSSL()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := images.WriteOCILayout(dir, img); err != nil {
		t.Fatal(err)
	}
	generated, err := sbom.Generate(context.Background(), sbom.Source{Scheme: sbom.SchemeOCIDir, Location: dir}, sbom.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return generated.JSON
}

func matchWith(t *testing.T, store *vulndb.Store, sbomJSON []byte) *match.Result {
	t.Helper()
	matcher, release, err := store.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	result, err := matcher.Match(context.Background(), sbomJSON)
	if err != nil {
		t.Fatal(err)
	}
	return result
}

func TestDatabaseUpdates(t *testing.T) {
	ctx := t.Context()
	served := t.TempDir()
	server := httptest.NewServer(http.FileServer(http.Dir(served)))
	defer server.Close()
	listingURL := server.URL + "/" + v6distribution.LatestFileName
	sbomJSON := debianSBOM(t)

	var swaps atomic.Int32
	store, err := vulndb.NewStore(vulndb.Options{
		Root: t.TempDir(), ListingURL: listingURL, OnSwap: func(match.Database) { swaps.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, _, err := store.Acquire(); err == nil {
		t.Fatal("Acquire succeeded without a database")
	}

	first := publish(t, served, false)
	if swapped, err := store.Update(ctx); err != nil || !swapped {
		t.Fatalf("first update: swapped %v, %v", swapped, err)
	}
	status := store.Status()
	if !status.Database.Built.Equal(first.Built) || status.LastError != "" || status.LastCheck.IsZero() {
		t.Errorf("status after the first update = %+v, want the database built %s", status, first.Built)
	}
	if got := summary(matchWith(t, store, sbomJSON)); got != "CVE-2023-0286 libssl3 3.0.7-1 deb 3.0.8-1\n" {
		t.Errorf("findings with the first database:\n%s", got)
	}
	if swapped, err := store.Update(ctx); err != nil || swapped {
		t.Errorf("an update to the same database: swapped %v, %v", swapped, err)
	}

	// A matcher taken before the swap keeps working on its database after the swap.
	before, releaseBefore, err := store.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	second := publish(t, served, true)
	if swapped, err := store.Update(ctx); err != nil || !swapped {
		t.Fatalf("second update: swapped %v, %v", swapped, err)
	}
	want := "CVE-2023-4911 libc6 2.36-9+deb12u1 deb 2.36-9+deb12u3\nCVE-2023-0286 libssl3 3.0.7-1 deb 3.0.8-1\n"
	if got := summary(matchWith(t, store, sbomJSON)); got != want {
		t.Errorf("findings with the second database:\n%s\nwant:\n%s", got, want)
	}
	if result, err := before.Match(ctx, sbomJSON); err != nil || len(result.Findings) != 1 {
		t.Errorf("the matcher of the first database after the swap: %v findings, %v", result, err)
	}
	releaseBefore()
	if got := swaps.Load(); got != 2 {
		t.Errorf("OnSwap was called %d times, want 2", got)
	}

	failures := []struct {
		name    string
		prepare func(t *testing.T)
		message string
	}{
		{
			name: "a corrupt archive",
			prepare: func(t *testing.T) {
				publish(t, served, true)
				rewriteListing(t, served, func(listing map[string]any) {
					path := filepath.Join(served, listing["path"].(string))
					if err := os.WriteFile(path, []byte("this is not a database archive"), 0o644); err != nil {
						t.Fatal(err)
					}
					archive, err := v6distribution.NewArchive(path, time.Now(), 6, 1, 0)
					if err != nil {
						t.Fatal(err)
					}
					listing["checksum"] = archive.Checksum
				})
			},
			message: "installing the database",
		},
		{
			name: "a checksum that does not match",
			prepare: func(t *testing.T) {
				publish(t, served, true)
				rewriteListing(t, served, func(listing map[string]any) {
					listing["checksum"] = "sha256:" + strings.Repeat("0", 64)
				})
			},
			message: "checksum",
		},
		{
			name: "another schema",
			prepare: func(t *testing.T) {
				publish(t, served, true)
				rewriteListing(t, served, func(listing map[string]any) { listing["schemaVersion"] = "v5.0.2" })
			},
			message: "offers a schema v5 database; Vigil reads schema v6",
		},
		{
			name:    "an unreachable server",
			prepare: func(t *testing.T) { server.Close() },
			message: "reading the listing",
		},
	}
	for _, tc := range failures {
		t.Run(tc.name+" keeps the current database", func(t *testing.T) {
			tc.prepare(t)
			swapped, err := store.Update(ctx)
			if err == nil || swapped || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("update: swapped %v, error %v; want an error containing %q", swapped, err, tc.message)
			}
			status := store.Status()
			if !status.Database.Built.Equal(second.Built) || !strings.Contains(status.LastError, tc.message) {
				t.Errorf("status = %+v", status)
			}
			if got := summary(matchWith(t, store, sbomJSON)); got != want {
				t.Errorf("findings after a failed update:\n%s", got)
			}
		})
	}
}

func TestDatabaseImport(t *testing.T) {
	ctx := t.Context()
	distribution := t.TempDir()
	built := publish(t, distribution, false)
	archives, err := filepath.Glob(filepath.Join(distribution, "*.tar.gz"))
	if err != nil || len(archives) != 1 {
		t.Fatalf("archives %v, %v", archives, err)
	}

	root := t.TempDir()
	store, err := vulndb.NewStore(vulndb.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Import(ctx, filepath.Join(distribution, "missing.tar.gz")); err == nil || store.Status().LastError == "" {
		t.Errorf("importing a missing file: %v, status %+v", err, store.Status())
	}
	if err := store.Import(ctx, archives[0]); err != nil {
		t.Fatal(err)
	}
	if got := store.Status().Database.Built; !got.Equal(built.Built) {
		t.Errorf("imported database built %s, want %s", got, built.Built)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	// A store opened on the same root loads the imported database, which sits where grype reads it.
	reopened, err := vulndb.NewStore(vulndb.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	if got := reopened.Status().Database.Built; !got.Equal(built.Built) {
		t.Errorf("reopened database built %s, want %s", got, built.Built)
	}
	if _, err := os.Stat(filepath.Join(root, "6", "vulnerability.db")); err != nil {
		t.Errorf("the database is not at ROOT/6/vulnerability.db: %v", err)
	}
}
