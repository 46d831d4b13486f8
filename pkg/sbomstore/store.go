// Package sbomstore keeps the SBOM of every scanned image digest on disk (a volume, in the
// cluster), so that a restarted manager scans nothing again and a new vulnerability database is
// matched against every SBOM without pulling any image.
package sbomstore

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Store is a folder of gzipped syft JSON SBOMs named by digest. It is safe for concurrent use:
// every write is a rename of a complete file.
type Store struct {
	dir string
}

// ErrNotFound means the store has no SBOM of the digest.
var ErrNotFound = errors.New("no stored SBOM")

// Open returns the store in dir, creating dir.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o750); err != nil {
		return nil, fmt.Errorf("creating the SBOM store %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(digest string) (string, error) {
	hex, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%q is not a sha256 digest", digest)
	}
	return filepath.Join(s.dir, "sha256", hex+".json.gz"), nil
}

// Put stores the SBOM (syft JSON) of digest, replacing any earlier one.
func (s *Store) Put(digest string, syftJSON []byte) error {
	return s.PutFrom(digest, bytes.NewReader(syftJSON))
}

// PutFrom stores the SBOM (syft JSON) that r reads, replacing any earlier one of digest. Nothing
// is stored when reading r fails: a partial SBOM never replaces a whole one.
func (s *Store) PutFrom(digest string, r io.Reader) error {
	path, err := s.path(digest)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".put-*")
	if err != nil {
		return fmt.Errorf("storing the SBOM of %s: %w", digest, err)
	}
	defer os.Remove(tmp.Name())
	compressed := gzip.NewWriter(tmp)
	if _, err := io.Copy(compressed, r); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("storing the SBOM of %s: %w", digest, err)
	}
	if err := compressed.Close(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("storing the SBOM of %s: %w", digest, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("storing the SBOM of %s: %w", digest, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("storing the SBOM of %s: %w", digest, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("storing the SBOM of %s: %w", digest, err)
	}
	return nil
}

// Delete removes the SBOM of digest; removing one that is not stored is not an error.
func (s *Store) Delete(digest string) error {
	path, err := s.path(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the SBOM of %s: %w", digest, err)
	}
	return nil
}

// Usage lists the digests stored and the bytes they take on disk.
func (s *Store) Usage() (digests []string, size int64, err error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, "sha256"))
	if err != nil {
		return nil, 0, fmt.Errorf("listing the SBOM store: %w", err)
	}
	for _, entry := range entries {
		hex, ok := strings.CutSuffix(entry.Name(), ".json.gz")
		if !ok {
			continue
		}
		info, err := entry.Info()
		if err != nil {
			continue // removed since it was listed
		}
		digests = append(digests, "sha256:"+hex)
		size += info.Size()
	}
	return digests, size, nil
}

// Get returns the stored SBOM of digest, or an error wrapping ErrNotFound.
func (s *Store) Get(digest string) ([]byte, error) {
	path, err := s.path(digest)
	if err != nil {
		return nil, err
	}
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the SBOM of %s: %w", digest, err)
	}
	defer file.Close()
	compressed, err := gzip.NewReader(file)
	if err != nil {
		return nil, fmt.Errorf("reading the SBOM of %s: %w", digest, err)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, compressed); err != nil {
		return nil, fmt.Errorf("reading the SBOM of %s: %w", digest, err)
	}
	return buf.Bytes(), nil
}

// Has tells whether the store holds the SBOM of digest.
func (s *Store) Has(digest string) bool {
	path, err := s.path(digest)
	if err != nil {
		return false
	}
	_, err = os.Stat(path)
	return err == nil
}
