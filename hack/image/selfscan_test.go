package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/test/fixtures/fixturedb"
	"github.com/vigil-dev/vigil/test/testenv"
)

// TestVigilScansItsOwnImage builds Vigil's image as `make image` does and scans it with
// `vigil-scanner scan --fail-on critical`: a release may not ship a Critical vulnerability. This
// machine has no internet, so the database is the one built from the advisory fixtures; with
// grype's own database the same command is the release check.
func TestVigilScansItsOwnImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Vigil's image")
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	layout := filepath.Join(work, "layout")
	build := exec.Command("go", "run", "./hack/image", "--oci-layout", layout)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the image: %v\n%s", err, out)
	}
	dbRoot := filepath.Join(work, "db")
	if _, err := fixturedb.Build(filepath.Join(dbRoot, "6"), time.Now(), filepath.Join(root, "test", "fixtures", "advisories")); err != nil {
		t.Fatal(err)
	}
	scanner, err := testenv.BuildBinary("./cmd/vigil-scanner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(testenv.RemoveBinaries)
	scan := exec.Command(scanner, "scan", "oci-dir:"+layout, "--db", dbRoot, "--fail-on", "critical")
	scan.Env = append(os.Environ(), "TMPDIR="+work)
	out, err := scan.CombinedOutput()
	if err != nil {
		t.Fatalf("vigil-scanner scan of Vigil's own image: %v\n%s", err, out)
	}
	t.Logf("vigil-scanner scan of Vigil's own image:\n%s", out)
}
