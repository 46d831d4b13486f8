package scanengine

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vigil-dev/vigil/cmd/vigil-scanner/app"
	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/testenv"
)

// grypeReport is the part of `grype -o json` that the parity test compares.
type grypeReport struct {
	Matches []struct {
		Vulnerability struct {
			ID  string `json:"id"`
			Fix struct {
				Versions []string `json:"versions"`
				State    string   `json:"state"`
			} `json:"fix"`
		} `json:"vulnerability"`
		Artifact struct {
			Name    string `json:"name"`
			Version string `json:"version"`
			Type    string `json:"type"`
		} `json:"artifact"`
	} `json:"matches"`
}

// finding is one line of a parity comparison: ID, package, version, type, fix state and
// fixed-in versions.
func finding(id, name, version, kind, fixState string, fixedIn []string) string {
	return strings.Join([]string{id, name, version, kind, strings.ToLower(fixState), strings.Join(fixedIn, ",")}, " ")
}

// vigilFindings scans source with `vigil scan -o json`, in process, and returns its findings,
// sorted.
func vigilFindings(t *testing.T, source string) []string {
	t.Helper()
	code, stdout, stderr := vigil("scan", source, "--db", dbRoot, "-o", "json", "-q")
	if code != app.ExitOK {
		t.Fatalf("vigil scan: exit %d: %s", code, stderr)
	}
	var report app.Report
	if err := json.Unmarshal([]byte(stdout), &report); err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, f := range report.Findings {
		found = append(found, finding(f.ID, f.Package.Name, f.Package.Version, f.Package.Type, string(f.FixState), f.FixedIn))
	}
	sort.Strings(found)
	return found
}

// grypeFindings scans source with the grype CLI on the same database, with the extra arguments
// (for example --by-cve), and returns its findings, sorted.
func grypeFindings(t *testing.T, grype, source string, extra ...string) []string {
	t.Helper()
	cmd := exec.Command(grype, append([]string{source, "-o", "json", "-q"}, extra...)...)
	cmd.Env = grypeEnv(t.TempDir())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("grype: %v: %s", err, errOut.String())
	}
	var report grypeReport
	if err := json.Unmarshal(out.Bytes(), &report); err != nil {
		t.Fatalf("grype output: %v", err)
	}
	var found []string
	for _, m := range report.Matches {
		found = append(found, finding(m.Vulnerability.ID, m.Artifact.Name, m.Artifact.Version, m.Artifact.Type, m.Vulnerability.Fix.State, m.Vulnerability.Fix.Versions))
	}
	sort.Strings(found)
	return found
}

// grypeEnv is the grype CLI's environment: the fixture database, no update, no version check,
// home in the given folder.
func grypeEnv(home string) []string {
	return append(os.Environ(),
		"GRYPE_DB_CACHE_DIR="+dbRoot, "GRYPE_DB_AUTO_UPDATE=false", "GRYPE_DB_VALIDATE_AGE=false",
		"GRYPE_CHECK_FOR_APP_UPDATE=false", "HOME="+home)
}

// grypeBinary is the grype CLI that hack/build-grype.sh builds from go.mod's grype version.
func grypeBinary(t testing.TB) string {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "bin", "grype")
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("bin/grype is missing (make tools builds it): %v", err)
		}
		t.Skip("bin/grype is not built; run 'make tools' to compare with the grype CLI")
	}
	return path
}

// fixtureRecipes are the fixture images that the parity tests compare on.
var fixtureRecipes = map[string]func() (v1.Image, error){
	"java-log4j": images.JavaLog4j, "debian-openssl": images.DebianOpenSSL, "alpine-openssl": images.AlpineOpenSSL,
	"node-minimist": images.NodeMinimist, "python-pyyaml": images.PythonPyYAML, "go-text": images.GoTextBinary,
	"clean": images.Clean, "mixed": mixed,
}

// TestTheManagersMatchingByCVEFindsWhatGrypeByCVEFinds generates each fixture image's SBOM and
// matches it the way the manager's scan reconciler does (match.Matcher.ByCVE: an advisory of a
// CVE is reported as that CVE), and compares the findings with `grype --by-cve` on the same
// database.
func TestTheManagersMatchingByCVEFindsWhatGrypeByCVEFinds(t *testing.T) {
	grype := grypeBinary(t)
	for name, recipe := range fixtureRecipes {
		t.Run(name, func(t *testing.T) {
			img, err := recipe()
			if err != nil {
				t.Fatal(err)
			}
			result := matchImage(t, img, match.NewMatcher(provider, database).ByCVE())
			var fromManager []string
			for _, f := range result.Findings {
				fromManager = append(fromManager, finding(f.ID, f.Package.Name, f.Package.Version, f.Package.Type, string(f.FixState), f.FixedIn))
			}
			sort.Strings(fromManager)
			fromGrype := grypeFindings(t, grype, ociLayout(t, recipe), "--by-cve")
			if strings.Join(fromManager, "\n") != strings.Join(fromGrype, "\n") {
				t.Errorf("the manager's matching found:\n%s\ngrype --by-cve found:\n%s", strings.Join(fromManager, "\n"), strings.Join(fromGrype, "\n"))
			}
			if name != "clean" && len(fromGrype) == 0 {
				t.Error("grype found nothing: the comparison shows nothing")
			}
		})
	}
}

// TestSameFindingsAsTheGrypeCLI scans every fixture image with `vigil scan -o json` and with the
// grype CLI built from the same grype module version, on the same database, and compares the
// vulnerabilities, packages, versions, fix states and fixed-in versions they report.
func TestSameFindingsAsTheGrypeCLI(t *testing.T) {
	grype := grypeBinary(t)
	for name, recipe := range fixtureRecipes {
		t.Run(name, func(t *testing.T) {
			source := ociLayout(t, recipe)

			fromVigil := vigilFindings(t, source)
			fromGrype := grypeFindings(t, grype, source)
			if strings.Join(fromVigil, "\n") != strings.Join(fromGrype, "\n") {
				t.Errorf("vigil found:\n%s\ngrype found:\n%s", strings.Join(fromVigil, "\n"), strings.Join(fromGrype, "\n"))
			}
			if name != "clean" && len(fromGrype) == 0 {
				t.Error("grype found nothing: the comparison shows nothing")
			}
		})
	}
}
