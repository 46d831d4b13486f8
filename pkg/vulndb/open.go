// Package vulndb opens grype v6 vulnerability databases for matching.
package vulndb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	v6 "github.com/anchore/grype/grype/db/v6"
	"github.com/anchore/grype/grype/vulnerability"

	"github.com/vigil-dev/vigil/pkg/match"
)

// Open opens the v6 database in dir (the folder that holds vulnerability.db) and returns a
// provider for matching and the database's identity. The caller closes the provider.
func Open(dir string) (vulnerability.Provider, match.Database, error) {
	path := filepath.Join(dir, v6.VulnerabilityDBFileName)
	if _, err := os.Stat(path); err != nil {
		return nil, match.Database{}, fmt.Errorf("no vulnerability database at %s: %w", path, err)
	}
	reader, err := v6.NewReader(v6.Config{DBDirPath: dir})
	if err != nil {
		return nil, match.Database{}, fmt.Errorf("opening the vulnerability database %s: %w", path, err)
	}
	metadata, err := reader.GetDBMetadata()
	if err != nil {
		_ = reader.Close()
		return nil, match.Database{}, fmt.Errorf("reading the vulnerability database %s: %w", path, err)
	}
	database, err := identify(metadata)
	if err != nil {
		_ = reader.Close()
		return nil, match.Database{}, fmt.Errorf("reading the vulnerability database %s: %w", path, err)
	}
	return v6.NewVulnerabilityProvider(reader), database, nil
}

// identify is the identity of a database with metadata, or why Vigil cannot read it. grype's
// reader already refuses other schemas; this keeps Vigil safe if a later reader stops doing so.
func identify(metadata *v6.DBMetadata) (match.Database, error) {
	if metadata == nil {
		return match.Database{}, errors.New("it has no metadata")
	}
	if metadata.Model != v6.ModelVersion {
		return match.Database{}, fmt.Errorf("its schema is v%d, not v%d", metadata.Model, v6.ModelVersion)
	}
	if metadata.BuildTimestamp == nil {
		return match.Database{}, errors.New("it has no build time")
	}
	return match.Database{
		SchemaVersion: fmt.Sprintf("v%d.%d.%d", metadata.Model, metadata.Revision, metadata.Addition),
		Built:         metadata.BuildTimestamp.UTC(),
	}, nil
}
