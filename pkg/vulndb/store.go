package vulndb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anchore/clio"
	v6 "github.com/anchore/grype/grype/db/v6"
	v6distribution "github.com/anchore/grype/grype/db/v6/distribution"
	v6installation "github.com/anchore/grype/grype/db/v6/installation"
	"github.com/anchore/grype/grype/vulnerability"
	"github.com/go-logr/logr"

	"github.com/vigil-dev/vigil/pkg/match"
)

// Options configure a Store.
type Options struct {
	// Root is the database root: it holds "6", the folder of the current database, as grype's own
	// cache does, so that `grype --db`-style tools and `vigil scan --db` read it too.
	Root string
	// ListingURL is the URL of the distribution listing document (latest.json) to update from;
	// empty means no updates from the network.
	ListingURL string
	// Timeout bounds the listing check and the archive download; 0 means 5 minutes.
	Timeout time.Duration
	// OnSwap, when set, is called after each swap to a new database, outside the Store's locks.
	OnSwap func(match.Database)
}

// Status describes the database in use and the last update check.
type Status struct {
	// Database is the database in use; its SchemaVersion is empty when there is none.
	Database match.Database `json:"database"`
	// LastCheck is when an update was last checked for or imported, successfully or not.
	LastCheck time.Time `json:"lastCheck,omitzero"`
	// LastUpdate is when a new database was last swapped in.
	LastUpdate time.Time `json:"lastUpdate,omitzero"`
	// LastError is the error of the last check or import, empty when it succeeded.
	LastError string `json:"lastError,omitempty"`
}

// Age is how old the database in use is at now.
func (s Status) Age(now time.Time) time.Duration {
	if s.Database.Built.IsZero() {
		return 0
	}
	return now.Sub(s.Database.Built)
}

// ErrNoDatabase means no database is loaded yet.
var ErrNoDatabase = errors.New("no vulnerability database is loaded")

// Store holds the vulnerability database in use. It updates it from a distribution listing or
// imports it from an archive, and swaps a new database in atomically: a new database is
// downloaded, verified against the listing's checksum, extracted and opened beside the current
// one, and only then replaces it; on any failure the current database stays in use. Matchers
// taken with Acquire keep their database open until they are released.
type Store struct {
	options Options
	client  v6distribution.Client

	mu      sync.RWMutex
	current *loaded
	status  Status

	// updateMu serializes updates and imports.
	updateMu sync.Mutex
}

// loaded is an open database with the count of its users.
type loaded struct {
	provider vulnerability.Provider
	database match.Database
	dir      string

	users   sync.WaitGroup
	retired bool
}

// NewStore returns a Store of the database under options.Root, loading it when there is one.
func NewStore(options Options) (*Store, error) {
	if options.Root == "" {
		return nil, errors.New("no database root folder given")
	}
	if options.Timeout <= 0 {
		options.Timeout = 5 * time.Minute
	}
	if err := os.MkdirAll(options.Root, 0o755); err != nil {
		return nil, fmt.Errorf("creating the database root %s: %w", options.Root, err)
	}
	client, err := v6distribution.NewClient(v6distribution.Config{
		ID:                 clio.Identification{Name: "vigil"},
		LatestURL:          options.ListingURL,
		RequireUpdateCheck: true,
		CheckTimeout:       options.Timeout,
		UpdateTimeout:      options.Timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the database download client: %w", err)
	}
	s := &Store{options: options, client: client}
	dir := s.currentDir()
	if _, err := os.Stat(filepath.Join(dir, v6.VulnerabilityDBFileName)); err == nil {
		provider, database, err := Open(dir)
		if err != nil {
			return nil, err
		}
		s.current = &loaded{provider: provider, database: database, dir: dir}
		s.status.Database = database
	}
	return s, nil
}

// currentDir is the folder grype reads the database from: Root/6.
func (s *Store) currentDir() string {
	return filepath.Join(s.options.Root, strconv.Itoa(v6.ModelVersion))
}

// Status returns the database in use and the outcome of the last check.
func (s *Store) Status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.status
}

// Acquire returns a Matcher of the database in use and the function that releases it; the
// database stays open until every Matcher of it is released, even after a swap.
func (s *Store) Acquire() (*match.Matcher, func(), error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.current == nil {
		return nil, nil, ErrNoDatabase
	}
	current := s.current
	current.users.Add(1)
	var once sync.Once
	return match.NewMatcher(current.provider, current.database), func() { once.Do(current.users.Done) }, nil
}

// Update checks the listing for a database newer than the one in use and swaps it in. It
// returns whether it swapped. Every failure leaves the current database in use and is recorded in
// the status.
func (s *Store) Update(ctx context.Context) (bool, error) {
	if s.options.ListingURL == "" {
		return false, errors.New("no database listing URL is configured")
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	swapped, err := s.update(ctx)
	s.recordCheck(err)
	return swapped, err
}

func (s *Store) update(ctx context.Context) (bool, error) {
	latest, err := s.client.Latest()
	if err != nil {
		return false, fmt.Errorf("reading the listing %s: %w", s.options.ListingURL, err)
	}
	if latest == nil {
		return false, fmt.Errorf("the listing %s lists no database", s.options.ListingURL)
	}
	if latest.SchemaVersion.Model != v6.ModelVersion {
		return false, fmt.Errorf("the listing %s offers a schema v%d database; Vigil reads schema v%d",
			s.options.ListingURL, latest.SchemaVersion.Model, v6.ModelVersion)
	}
	current := s.Status().Database
	if !current.Built.IsZero() && !latest.Built.After(current.Built) {
		logr.FromContextOrDiscard(ctx).V(1).Info("Vulnerability database is current", "built", current.Built)
		return false, nil
	}
	archiveURL, err := s.client.ResolveArchiveURL(latest.Archive)
	if err != nil {
		return false, fmt.Errorf("resolving the archive of %s: %w", s.options.ListingURL, err)
	}
	if err := s.install(ctx, archiveURL); err != nil {
		return false, err
	}
	return true, nil
}

// Import swaps in the database of an archive file (tar.gz, tar.zst or tar.xz, as grype
// distributes it) or a vulnerability.db file, for clusters without network access.
func (s *Store) Import(ctx context.Context, path string) error {
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	err := func() error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("importing the database: %w", err)
		}
		return s.install(ctx, path)
	}()
	s.recordCheck(err)
	return err
}

func (s *Store) recordCheck(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.LastCheck = time.Now().UTC()
	s.status.LastError = ""
	if err != nil {
		s.status.LastError = err.Error()
	}
}

// install stages the database of reference (an archive URL with its checksum, or a file),
// verifies it and swaps it in.
func (s *Store) install(ctx context.Context, reference string) error {
	staging, err := os.MkdirTemp(s.options.Root, "staging-")
	if err != nil {
		return fmt.Errorf("creating a staging folder: %w", err)
	}
	defer os.RemoveAll(staging)
	curator, err := v6installation.NewCurator(v6installation.Config{DBRootDir: staging, ValidateChecksum: true}, s.client)
	if err != nil {
		return fmt.Errorf("preparing the database import: %w", err)
	}
	if err := curator.Import(reference); err != nil {
		return fmt.Errorf("installing the database from %s: %w", reference, err)
	}
	stagedDir := filepath.Join(staging, strconv.Itoa(v6.ModelVersion))
	return s.swap(ctx, stagedDir)
}

// swap moves the verified database in stagedDir into place and makes it the one in use. The
// database folder Root/6 is a symbolic link to a versioned folder, so that the switch is one
// atomic rename and the previous database is never removed before the new one is in place.
func (s *Store) swap(ctx context.Context, stagedDir string) error {
	versioned := filepath.Join(s.options.Root, fmt.Sprintf("db-%d", time.Now().UnixNano()))
	if err := os.Rename(stagedDir, versioned); err != nil {
		return fmt.Errorf("placing the new database: %w", err)
	}
	provider, opened, err := Open(versioned)
	if err != nil {
		_ = os.RemoveAll(versioned)
		return fmt.Errorf("verifying the new database: %w", err)
	}
	link := s.currentDir()
	tmpLink := link + ".new"
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(versioned), tmpLink); err != nil {
		_ = provider.Close()
		_ = os.RemoveAll(versioned)
		return fmt.Errorf("linking the new database: %w", err)
	}
	previousDir := ""
	if target, err := os.Readlink(link); err == nil {
		// Vigil's own link names a versioned folder beside it. A link placed by hand may name a
		// folder that is not Vigil's (grype's own cache, say): it is left where it is.
		if isVersioned(target) {
			previousDir = filepath.Join(s.options.Root, target)
		}
	} else if info, err := os.Lstat(link); err == nil && info.IsDir() {
		// A database placed by hand (or by grype) as a plain folder: keep it aside until the new
		// one is in place.
		previousDir = filepath.Join(s.options.Root, fmt.Sprintf("db-previous-%d", time.Now().UnixNano()))
		if err := os.Rename(link, previousDir); err != nil {
			_ = provider.Close()
			_ = os.Remove(tmpLink)
			_ = os.RemoveAll(versioned)
			return fmt.Errorf("moving the previous database aside: %w", err)
		}
	}
	if err := os.Rename(tmpLink, link); err != nil {
		_ = provider.Close()
		_ = os.Remove(tmpLink)
		_ = os.RemoveAll(versioned)
		return fmt.Errorf("switching to the new database: %w", err)
	}

	s.mu.Lock()
	previous := s.current
	s.current = &loaded{provider: provider, database: opened, dir: versioned}
	s.status.Database = opened
	s.status.LastUpdate = time.Now().UTC()
	s.mu.Unlock()
	logr.FromContextOrDiscard(ctx).Info("Swapped in a new vulnerability database",
		"schema", opened.SchemaVersion, "built", opened.Built)

	go retire(ctx, previous, previousDir)
	if s.options.OnSwap != nil {
		s.options.OnSwap(opened)
	}
	return nil
}

// isVersioned tells whether a link target names one of the versioned database folders that swap
// places in the database root.
func isVersioned(target string) bool {
	return target == filepath.Base(target) && strings.HasPrefix(target, "db-")
}

// retire closes the previous database once its last user releases it and removes its folder;
// either may be absent (nil, "").
func retire(ctx context.Context, previous *loaded, dir string) {
	if previous != nil {
		previous.users.Wait()
		if err := previous.provider.Close(); err != nil {
			logr.FromContextOrDiscard(ctx).Error(err, "Closing the previous vulnerability database")
		}
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			logr.FromContextOrDiscard(ctx).Error(err, "Removing the previous vulnerability database", "dir", dir)
		}
	}
}

// Close closes the database in use once its users release it.
func (s *Store) Close() error {
	s.mu.Lock()
	current := s.current
	s.current = nil
	s.mu.Unlock()
	if current == nil {
		return nil
	}
	current.users.Wait()
	return current.provider.Close()
}

// Built is when the database in use was built; zero when none is loaded.
func (s *Store) Built() time.Time {
	return s.Status().Database.Built
}

// Describe reads a vulnerability's details from the database in use.
func (s *Store) Describe(primary match.Reference, related []match.Reference) (match.Details, error) {
	matcher, release, err := s.Acquire()
	if err != nil {
		return match.Details{}, err
	}
	defer release()
	return matcher.Describe(primary, related)
}
