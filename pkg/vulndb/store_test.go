package vulndb

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v6 "github.com/anchore/grype/grype/db/v6"
	v6distribution "github.com/anchore/grype/grype/db/v6/distribution"

	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/test/fixtures/fixturedb"
	"github.com/vigil-dev/vigil/test/testlog"
)

// fixtures are two databases of the advisory fixtures, built once for the whole test binary: the
// older of the base advisories, the newer, a day later, with the update overlay.
var fixtures struct {
	once         sync.Once
	dir          string
	older, newer *fixturedb.Database
	err          error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtures.dir != "" {
		_ = os.RemoveAll(fixtures.dir)
	}
	os.Exit(code)
}

// databases returns the two fixture databases, building them on first use.
func databases(t *testing.T) (older, newer *fixturedb.Database) {
	t.Helper()
	fixtures.once.Do(func() {
		fixtures.dir, fixtures.err = os.MkdirTemp("", "vigil-vulndb-test-")
		if fixtures.err != nil {
			return
		}
		advisories := filepath.Join("..", "..", "test", "fixtures", "advisories")
		built := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
		fixtures.older, fixtures.err = fixturedb.Build(filepath.Join(fixtures.dir, "older"), built, advisories)
		if fixtures.err != nil {
			return
		}
		fixtures.newer, fixtures.err = fixturedb.Build(filepath.Join(fixtures.dir, "newer"), built.Add(24*time.Hour),
			advisories, advisories+"-update")
	})
	if fixtures.err != nil {
		t.Fatal(fixtures.err)
	}
	return fixtures.older, fixtures.newer
}

// place copies the database's files into dir, as grype's cache holds them.
func place(t *testing.T, database *fixturedb.Database, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{v6.VulnerabilityDBFileName, v6.ImportMetadataFileName} {
		copyFile(t, filepath.Join(database.Dir, name), filepath.Join(dir, name))
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	content, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// editMetadata sets a column of the metadata of the database in dir.
func editMetadata(t *testing.T, dir, column string, value any) {
	t.Helper()
	database, err := v6.NewLowLevelDB(filepath.Join(dir, v6.VulnerabilityDBFileName), false, true, false)
	if err != nil {
		t.Fatal(err)
	}
	updateErr := database.Model(&v6.DBMetadata{}).Where("true").Update(column, value).Error
	sqlDB, err := database.DB()
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(updateErr, sqlDB.Close()); err != nil {
		t.Fatal(err)
	}
}

// identity is the match.Database a fixture database is known by.
func identity(database *fixturedb.Database) match.Database {
	return match.Database{
		SchemaVersion: fmt.Sprintf("v%d.%d.%d", database.Model, database.Revision, database.Addition),
		Built:         database.Built,
	}
}

// nvdCVE is a vulnerability of the fixtures, as NVD records it.
var nvdCVE = match.Reference{ID: "CVE-2023-0286", Namespace: "nvd:cpe"}

func TestTheAgeOfTheDatabase(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		built time.Time
		want  time.Duration
	}{
		{name: "no database", want: 0},
		{name: "built six hours ago", built: now.Add(-6 * time.Hour), want: 6 * time.Hour},
		{name: "built now", built: now, want: 0},
	}
	for _, tc := range tests {
		status := Status{Database: match.Database{Built: tc.built}}
		if got := status.Age(now); got != tc.want {
			t.Errorf("%s: age %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestOpeningADatabase(t *testing.T) {
	older, _ := databases(t)
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		wantErr string
	}{
		{name: "an empty folder", prepare: func(*testing.T, string) {}, wantErr: "no vulnerability database at"},
		{name: "a file that is no database", prepare: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, v6.VulnerabilityDBFileName), []byte("not a database"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: "vulnerability database"},
		{name: "a database of another schema", prepare: func(t *testing.T, dir string) {
			place(t, older, dir)
			editMetadata(t, dir, "model", 5)
		}, wantErr: "not a v6 database"},
		{name: "the fixture database", prepare: func(t *testing.T, dir string) { place(t, older, dir) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.prepare(t, dir)
			provider, database, err := Open(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || provider != nil || database != (match.Database{}) {
					t.Fatalf("opened %+v, %v; want an error containing %q", database, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer provider.Close()
			if database != identity(older) {
				t.Errorf("opened %+v, want %+v", database, identity(older))
			}
			details, err := match.NewMatcher(provider, database).Describe(nvdCVE, nil)
			if err != nil || details.ID != nvdCVE.ID || details.Description == "" {
				t.Errorf("described %+v, %v", details, err)
			}
		})
	}
}

func TestTheMetadataADatabaseIsKnownBy(t *testing.T) {
	built := time.Date(2026, 11, 29, 6, 0, 0, 0, time.FixedZone("CET", 3600))
	tests := []struct {
		name     string
		metadata *v6.DBMetadata
		want     match.Database
		wantErr  string
	}{
		{name: "no metadata", wantErr: "it has no metadata"},
		{name: "another schema", metadata: &v6.DBMetadata{Model: 5, Revision: 0, Addition: 2, BuildTimestamp: &built},
			wantErr: "its schema is v5, not v6"},
		{name: "no build time", metadata: &v6.DBMetadata{Model: v6.ModelVersion, Revision: 1}, wantErr: "it has no build time"},
		{name: "a v6 database", metadata: &v6.DBMetadata{Model: v6.ModelVersion, Revision: 1, Addition: 3, BuildTimestamp: &built},
			want: match.Database{SchemaVersion: "v6.1.3", Built: time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)}},
	}
	for _, tc := range tests {
		got, err := identify(tc.metadata)
		if tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr) {
			t.Errorf("%s: %+v, %v; want the error %q", tc.name, got, err, tc.wantErr)
		}
		if got != tc.want || (tc.wantErr == "" && err != nil) {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestOpeningAStore(t *testing.T) {
	older, _ := databases(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		root    string
		prepare func(t *testing.T, root string)
		wantErr string
		want    match.Database
	}{
		{name: "no root", root: "", wantErr: "no database root folder given"},
		{name: "a root below a file", root: filepath.Join(file, "db"), wantErr: "creating the database root"},
		{name: "a root without a database", root: "empty"},
		{name: "a root with a database", root: "loaded", prepare: func(t *testing.T, root string) {
			place(t, older, filepath.Join(root, "6"))
		}, want: identity(older)},
		{name: "a root with a broken database", root: "broken", prepare: func(t *testing.T, root string) {
			place(t, older, filepath.Join(root, "6"))
			editMetadata(t, filepath.Join(root, "6"), "model", 7)
		}, wantErr: "not a v6 database"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := tc.root
			if root != "" && !filepath.IsAbs(root) {
				root = filepath.Join(t.TempDir(), root)
			}
			if tc.prepare != nil {
				tc.prepare(t, root)
			}
			store, err := NewStore(Options{Root: root})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("opened a store, %v; want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := store.Status(); got != (Status{Database: tc.want}) {
				t.Errorf("status %+v, want the database %+v and no check", got, tc.want)
			}
			if got := store.Built(); !got.Equal(tc.want.Built) {
				t.Errorf("built %s, want %s", got, tc.want.Built)
			}
			details, err := store.Describe(nvdCVE, nil)
			if tc.want == (match.Database{}) {
				if !errors.Is(err, ErrNoDatabase) {
					t.Errorf("described %+v, %v; want %v", details, err, ErrNoDatabase)
				}
				if _, _, err := store.Acquire(); !errors.Is(err, ErrNoDatabase) {
					t.Errorf("acquired a matcher, %v; want %v", err, ErrNoDatabase)
				}
			} else if err != nil || details.ID != nvdCVE.ID || details.Severity == match.SeverityUnknown {
				t.Errorf("described %+v, %v", details, err)
			}
			if err := store.Close(); err != nil {
				t.Error(err)
			}
			if _, _, err := store.Acquire(); !errors.Is(err, ErrNoDatabase) {
				t.Errorf("acquired a matcher of a closed store, %v", err)
			}
		})
	}
}

func TestTheDownloadTimeout(t *testing.T) {
	for given, want := range map[time.Duration]time.Duration{0: 5 * time.Minute, -time.Second: 5 * time.Minute, time.Second: time.Second} {
		store, err := NewStore(Options{Root: t.TempDir(), Timeout: given})
		if err != nil {
			t.Fatal(err)
		}
		if store.options.Timeout != want {
			t.Errorf("a timeout of %s becomes %s, want %s", given, store.options.Timeout, want)
		}
	}
}

// distribution serves databases as grype's distribution does, from a loopback server.
type distribution struct {
	dir    string
	server *httptest.Server
}

func newDistribution(t *testing.T) *distribution {
	t.Helper()
	d := &distribution{dir: t.TempDir()}
	d.server = httptest.NewServer(http.FileServer(http.Dir(d.dir)))
	t.Cleanup(d.server.Close)
	return d
}

func (d *distribution) listingURL() string {
	return d.server.URL + "/" + v6distribution.LatestFileName
}

// publish makes database the one the listing names.
func (d *distribution) publish(t *testing.T, database *fixturedb.Database) {
	t.Helper()
	if _, err := database.Package(d.dir); err != nil {
		t.Fatal(err)
	}
}

// writeListing replaces the listing document.
func (d *distribution) writeListing(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.dir, v6distribution.LatestFileName), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// expectOnlyTheDatabaseInUse fails t unless root holds only the link and the database it names
// (no staging folder, no retired database left) and retiring the previous one logged no error.
func expectOnlyTheDatabaseInUse(t *testing.T, root string, log *testlog.Errors) {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("the root holds %v, want the link and the database in use, nothing else", entries)
	}
	if errs := log.Messages(); len(errs) != 0 {
		t.Errorf("retiring the previous database logged errors: %v", errs)
	}
}

// waitUntilGone waits for the retired database folder to be removed.
func waitUntilGone(t *testing.T, dir string) {
	t.Helper()
	for range 200 {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("the retired database %s is still there", dir)
}

func TestUpdatingFromTheListing(t *testing.T) {
	var log testlog.Errors
	ctx := log.Into(t.Context())
	older, newer := databases(t)
	served := newDistribution(t)
	var swaps []match.Database
	root := t.TempDir()
	store, err := NewStore(Options{Root: root, ListingURL: served.listingURL(), OnSwap: func(d match.Database) { swaps = append(swaps, d) }})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	served.publish(t, older)
	if swapped, err := store.Update(ctx); !swapped || err != nil {
		t.Fatalf("the first update swapped %v, %v", swapped, err)
	}
	status := store.Status()
	if status.Database != identity(older) || status.LastError != "" || status.LastCheck.IsZero() || status.LastUpdate.IsZero() {
		t.Errorf("status after the first update %+v", status)
	}
	first, err := os.Readlink(filepath.Join(root, "6"))
	if err != nil || !strings.HasPrefix(first, "db-") {
		t.Fatalf("ROOT/6 links to %q, %v; want a versioned folder", first, err)
	}
	if swapped, err := store.Update(ctx); swapped || err != nil {
		t.Errorf("an update to the same database swapped %v, %v", swapped, err)
	}

	// A matcher taken before a swap keeps its database until it is released.
	before, release, err := store.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer release() // before the deferred Close, which waits for it, when the test stops early
	served.publish(t, newer)
	if swapped, err := store.Update(ctx); !swapped || err != nil {
		t.Fatalf("the update to a newer database swapped %v, %v", swapped, err)
	}
	if got := store.Status().Database; got != identity(newer) {
		t.Errorf("database after the update %+v, want %+v", got, identity(newer))
	}
	if _, err := before.Describe(nvdCVE, nil); err != nil {
		t.Errorf("the matcher of the previous database after the swap: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, first)); err != nil {
		t.Errorf("the previous database was removed while a matcher used it: %v", err)
	}
	release()
	release() // releasing twice is harmless
	waitUntilGone(t, filepath.Join(root, first))
	if len(swaps) != 2 || swaps[0] != identity(older) || swaps[1] != identity(newer) {
		t.Errorf("OnSwap saw %+v, want the older then the newer database", swaps)
	}

	served.publish(t, older)
	if swapped, err := store.Update(ctx); swapped || err != nil {
		t.Errorf("an update to an older database swapped %v, %v", swapped, err)
	}

	failures := []struct {
		name    string
		listing string
		wantErr string
	}{
		{name: "an empty listing", listing: "{}", wantErr: "lists no database"},
		{name: "a listing of another schema", listing: `{"status": "active", "schemaVersion": "v5.0.2", "built": "2026-11-29T00:00:00Z", "path": "x.tar.gz", "checksum": "sha256:00"}`,
			wantErr: "offers a schema v5 database; Vigil reads schema v6"},
		{name: "no listing", wantErr: "reading the listing"},
		{name: "an archive that is not there", listing: fmt.Sprintf(`{"status": "active", "schemaVersion": "v6.0.0", "built": %q, "path": "gone.tar.gz", "checksum": "sha256:00"}`,
			newer.Built.Add(time.Hour).Format(time.RFC3339)), wantErr: "installing the database"},
	}
	for _, tc := range failures {
		t.Run(tc.name+" keeps the database", func(t *testing.T) {
			if tc.listing == "" {
				if err := os.Remove(filepath.Join(served.dir, v6distribution.LatestFileName)); err != nil {
					t.Fatal(err)
				}
			} else {
				served.writeListing(t, tc.listing)
			}
			swapped, err := store.Update(ctx)
			if swapped || err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("swapped %v, %v; want an error containing %q", swapped, err, tc.wantErr)
			}
			status := store.Status()
			if status.Database != identity(newer) || !strings.Contains(status.LastError, tc.wantErr) {
				t.Errorf("status %+v", status)
			}
			if _, err := store.Describe(nvdCVE, nil); err != nil {
				t.Errorf("describing after a failed update: %v", err)
			}
		})
	}

	served.publish(t, newer)
	if _, err := store.Update(ctx); err != nil || store.Status().LastError != "" {
		t.Errorf("a good check after failed ones: %v, status %+v", err, store.Status())
	}
	expectOnlyTheDatabaseInUse(t, root, &log)
}

func TestUpdatingWithoutAListing(t *testing.T) {
	store, err := NewStore(Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if swapped, err := store.Update(t.Context()); swapped || err == nil || !strings.Contains(err.Error(), "no database listing URL") {
		t.Errorf("swapped %v, %v; want an error saying there is no listing", swapped, err)
	}
}

func TestImportingADatabase(t *testing.T) {
	var log testlog.Errors
	ctx := log.Into(t.Context())
	older, newer := databases(t)
	archiveDir := t.TempDir()
	newer.Package(archiveDir) //nolint:errcheck // checked by the glob below
	archives, err := filepath.Glob(filepath.Join(archiveDir, "*.tar.gz"))
	if err != nil || len(archives) != 1 {
		t.Fatalf("archives %v, %v", archives, err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.tar.gz")
	if err := os.WriteFile(garbage, []byte("not an archive"), 0o644); err != nil {
		t.Fatal(err)
	}

	// A database placed by hand as a plain folder, as grype's own cache holds it.
	root := t.TempDir()
	place(t, older, filepath.Join(root, "6"))
	var swaps int
	store, err := NewStore(Options{Root: root, OnSwap: func(match.Database) { swaps++ }})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	before, release, err := store.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	defer release() // before the deferred Close, which waits for it, when the test stops early

	for _, path := range []string{filepath.Join(archiveDir, "missing.tar.gz"), garbage} {
		if err := store.Import(ctx, path); err == nil || store.Status().LastError != err.Error() || store.Status().Database != identity(older) {
			t.Errorf("importing %s: %v, status %+v; want an error and the database kept", path, err, store.Status())
		}
	}
	if err := store.Import(ctx, archives[0]); err != nil {
		t.Fatal(err)
	}
	if status := store.Status(); status.Database != identity(newer) || status.LastError != "" || swaps != 1 {
		t.Errorf("status after the import %+v, %d swaps", status, swaps)
	}
	if target, err := os.Readlink(filepath.Join(root, "6")); err != nil || !strings.HasPrefix(target, "db-") {
		t.Errorf("ROOT/6 links to %q, %v; want the imported database", target, err)
	}
	if _, err := before.Describe(nvdCVE, nil); err != nil {
		t.Errorf("the matcher of the hand-placed database after the import: %v", err)
	}
	aside, err := filepath.Glob(filepath.Join(root, "db-previous-*"))
	if err != nil || len(aside) != 1 {
		t.Fatalf("moved aside %v, %v; want the hand-placed database, kept while a matcher uses it", aside, err)
	}
	release()
	waitUntilGone(t, aside[0])
	expectOnlyTheDatabaseInUse(t, root, &log)
}

func TestClosingWaitsForTheMatchersInUse(t *testing.T) {
	older, _ := databases(t)
	root := t.TempDir()
	place(t, older, filepath.Join(root, "6"))
	store, err := NewStore(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	_, release, err := store.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error)
	go func() { closed <- store.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("the store closed (%v) while a matcher was in use", err)
	case <-time.After(100 * time.Millisecond):
	}
	release()
	if err := <-closed; err != nil {
		t.Error(err)
	}
	if err := store.Close(); err != nil {
		t.Errorf("closing twice: %v", err)
	}
}

func TestASwapRemovesOnlyTheDatabasesVigilPlaced(t *testing.T) {
	older, newer := databases(t)
	archiveDir := t.TempDir()
	if _, err := newer.Package(archiveDir); err != nil {
		t.Fatal(err)
	}
	archives, err := filepath.Glob(filepath.Join(archiveDir, "*.tar.gz"))
	if err != nil || len(archives) != 1 {
		t.Fatalf("archives %v, %v", archives, err)
	}
	// An operator points ROOT/6 at a database folder of their own, beside the root or anywhere.
	for _, name := range []string{"beside the root", "anywhere"} {
		t.Run("a link "+name, func(t *testing.T) {
			parent := t.TempDir()
			root, own := filepath.Join(parent, "root"), filepath.Join(parent, "grype", "6")
			place(t, older, own)
			target := filepath.Join("..", "grype", "6")
			if name == "anywhere" {
				target = own
			}
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(root, "6")); err != nil {
				t.Fatal(err)
			}
			var log testlog.Errors
			store, err := NewStore(Options{Root: root})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			before, release, err := store.Acquire()
			if err != nil {
				t.Fatal(err)
			}
			defer release() // before the deferred Close, which waits for it, when the test stops early
			if err := store.Import(log.Into(t.Context()), archives[0]); err != nil {
				t.Fatal(err)
			}
			if got := store.Status().Database; got != identity(newer) {
				t.Errorf("database after the import %+v", got)
			}
			// The previous database is retired in the background once released: closed, then its
			// folder removed when it is Vigil's. Wait until it is closed, then a little longer.
			release()
			for i := 0; ; i++ {
				if _, err := before.Describe(nvdCVE, nil); err != nil {
					break
				}
				if i == 200 {
					t.Fatal("the previous database is never closed")
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond)
			if _, err := os.Stat(filepath.Join(own, v6.VulnerabilityDBFileName)); err != nil {
				t.Errorf("the operator's own database was removed: %v", err)
			}
			if errs := log.Messages(); len(errs) != 0 {
				t.Errorf("logged errors: %v", errs)
			}
		})
	}
}
