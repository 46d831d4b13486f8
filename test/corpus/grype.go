package corpus

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// GrypeCLI is the grype CLI that `make tools` builds (bin/grype, go.mod's grype version), run on
// one database and nothing else: no database update, no version check, a home of its own.
type GrypeCLI struct {
	path, dbRoot, home string
}

// NewGrypeCLI returns the grype CLI of the module at root, on the database in dbDir (a folder
// holding vulnerability.db, as a grype database root's "6" does); it skips tb when bin/grype is
// not built.
func NewGrypeCLI(tb testing.TB, root, dbDir string) *GrypeCLI {
	tb.Helper()
	path := filepath.Join(root, "bin", "grype")
	if _, err := os.Stat(path); err != nil {
		tb.Skip("bin/grype is not built; run 'make tools'")
	}
	dbRoot := tb.TempDir()
	if err := os.Symlink(dbDir, filepath.Join(dbRoot, "6")); err != nil {
		tb.Fatal(err)
	}
	return &GrypeCLI{path: path, dbRoot: dbRoot, home: tb.TempDir()}
}

// TimeRegistryScan scans reference, on a registry reached over plain HTTP, as `grype
// registry:<reference> -o json` does, and returns how long it took.
func (g *GrypeCLI) TimeRegistryScan(reference string) (time.Duration, error) {
	start := time.Now()
	cmd := exec.Command(g.path, "registry:"+reference, "-o", "json", "-q")
	cmd.Env = append(os.Environ(), "GRYPE_DB_CACHE_DIR="+g.dbRoot, "GRYPE_DB_AUTO_UPDATE=false", "GRYPE_DB_VALIDATE_AGE=false",
		"GRYPE_CHECK_FOR_APP_UPDATE=false", "GRYPE_REGISTRY_INSECURE_USE_HTTP=true", "HOME="+g.home)
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errOut
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("grype: %w: %s", err, errOut.String())
	}
	return time.Since(start), nil
}

// AdmissionRound is one round of an admission benchmark: the name the image was pushed under, the
// time from its workload's creation to its Vulnerability, and the grype CLI's scan time.
type AdmissionRound struct {
	Name           string
	Admission, CLI time.Duration
}

// CompareAdmissions runs three rounds of image, interleaved: each pushes the image under a name
// of its own (push returns its reference, a digest never scanned), times the grype CLI's scan of
// it, then admit's time from a workload of it created to its Vulnerability. observe, if not nil,
// is told each round. It returns the line reporting both medians and their ratio.
func (g *GrypeCLI) CompareAdmissions(image string, push func(name string) (string, error),
	admit func(name, reference string) (time.Duration, error), observe func(AdmissionRound)) (string, error) {
	var admissions, scans []time.Duration
	for round := range 3 {
		name := fmt.Sprintf("%s-%d", image, round)
		reference, err := push(name)
		if err != nil {
			return "", err
		}
		scanned, err := g.TimeRegistryScan(reference)
		if err != nil {
			return "", err
		}
		admitted, err := admit(name, reference)
		if err != nil {
			return "", err
		}
		admissions, scans = append(admissions, admitted), append(scans, scanned)
		if observe != nil {
			observe(AdmissionRound{Name: name, Admission: admitted, CLI: scanned})
		}
	}
	slices.Sort(admissions)
	slices.Sort(scans)
	return fmt.Sprintf("%s: admission to Vulnerability %.2f s (runs %v), grype CLI %.2f s (runs %v), ratio %.2f\n", image,
		admissions[1].Seconds(), admissions, scans[1].Seconds(), scans, admissions[1].Seconds()/scans[1].Seconds()), nil
}
