package scanengine

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vigil-dev/vigil/cmd/vigil-scanner/app"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
)

// vigil runs the vigil-scanner command, which `vigil scan` runs, in process.
func vigil(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = app.Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// ociLayout writes the image that recipe builds as an OCI layout and returns its source.
func ociLayout(t *testing.T, recipe func() (v1.Image, error)) string {
	t.Helper()
	img, err := recipe()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if err := images.WriteOCILayout(dir, img); err != nil {
		t.Fatal(err)
	}
	return "oci-dir:" + dir
}

// mixed is an image with findings of several severities and scores.
func mixed() (v1.Image, error) {
	jar, err := images.Jar("org.apache.logging.log4j", "log4j-core", "2.14.1")
	if err != nil {
		return nil, err
	}
	node, err := images.NodeMinimist()
	if err != nil {
		return nil, err
	}
	alpine, err := images.AlpineOpenSSL()
	if err != nil {
		return nil, err
	}
	layers := []images.Layer{{"/app/lib/log4j-core-2.14.1.jar": jar}}
	for _, img := range []v1.Image{alpine, node} {
		files, err := images.Files(img)
		if err != nil {
			return nil, err
		}
		layers = append(layers, files)
	}
	return images.Build(layers...)
}

func TestScanCommandTable(t *testing.T) {
	source := ociLayout(t, mixed)
	code, stdout, stderr := vigil("scan", source, "--db", dbRoot)
	if code != app.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	want := []string{
		`ID\s+SEVERITY\s+CVSS\s+PACKAGE\s+INSTALLED\s+FIXED-IN`,
		`GHSA-jfh8-c2jp-5v3q\s+Critical\s+10.0\s+log4j-core\s+2.14.1\s+2.15.0`,
		`GHSA-xvch-5gv4-984h\s+Critical\s+9.8\s+minimist\s+1.2.5\s+1.2.6`,
		`CVE-2023-0286\s+High\s+7.4\s+libcrypto3\s+3.0.7-r0\s+3.0.8-r0`,
		`CVE-2023-0286\s+High\s+7.4\s+libssl3\s+3.0.7-r0\s+3.0.8-r0`,
	}
	if len(lines) != len(want) {
		t.Fatalf("table:\n%s", stdout)
	}
	for i, pattern := range want {
		if !regexp.MustCompile("^" + pattern + "$").MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i, lines[i], pattern)
		}
	}
	for _, step := range []string{"Loading the vulnerability database", "Generating the SBOM of " + source, "Matching", "Found 4 vulnerabilities"} {
		if !strings.Contains(stderr, step) {
			t.Errorf("progress on stderr lacks %q:\n%s", step, stderr)
		}
	}
}

func TestScanCommandJSONAndSBOM(t *testing.T) {
	source := ociLayout(t, images.JavaLog4j)
	dir := t.TempDir()
	for format, key := range map[string]string{"syft-json": `"artifacts"`, "cyclonedx-json": `"bomFormat"`, "spdx-json": `"spdxVersion"`} {
		t.Run(format, func(t *testing.T) {
			sbomPath := filepath.Join(dir, format+".json")
			code, stdout, stderr := vigil("scan", source, "--db", dbRoot, "-o", "json", "--sbom", sbomPath, "--sbom-format", format, "-q")
			if code != app.ExitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			var report app.Report
			if err := json.Unmarshal([]byte(stdout), &report); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, stdout)
			}
			if len(report.Findings) != 1 || report.Findings[0].Package.Name != "log4j-core" || !report.Findings[0].KnownExploited ||
				report.Database.SchemaVersion == "" || report.Packages != 1 {
				t.Errorf("report = %+v", report)
			}
			content, err := os.ReadFile(sbomPath)
			if err != nil || !bytes.Contains(content, []byte(key)) || !bytes.Contains(content, []byte("log4j-core")) {
				t.Errorf("the %s SBOM lacks %s or log4j-core (%v)", format, key, err)
			}
		})
	}
}

func TestScanCommandFailOn(t *testing.T) {
	vulnerable := ociLayout(t, images.GoTextBinary) // one High finding
	clean := ociLayout(t, images.Clean)
	tests := []struct {
		source, failOn string
		want           int
	}{
		{vulnerable, "high", app.ExitFailOn},
		{vulnerable, "medium", app.ExitFailOn},
		{vulnerable, "critical", app.ExitOK},
		{clean, "negligible", app.ExitOK},
	}
	for _, tc := range tests {
		code, stdout, stderr := vigil("scan", tc.source, "--db", dbRoot, "--fail-on", tc.failOn, "-q")
		if code != tc.want {
			t.Errorf("--fail-on %s: exit %d, want %d; stderr %q", tc.failOn, code, tc.want, stderr)
		}
		if code == app.ExitFailOn && (!strings.Contains(stderr, "at or above") || !strings.Contains(stdout, "GHSA-69ch-w2m2-3vjp")) {
			t.Errorf("--fail-on %s: stdout %q, stderr %q", tc.failOn, stdout, stderr)
		}
	}
	if code, stdout, _ := vigil("scan", clean, "--db", dbRoot, "-q"); code != app.ExitOK || !strings.Contains(stdout, "No known vulnerabilities") {
		t.Errorf("clean image: exit %d, %q", code, stdout)
	}
}

func TestScanCommandBadInput(t *testing.T) {
	source := ociLayout(t, images.JavaLog4j)
	private := registry.Start(registry.Options{Username: "vigil", Password: "s3cret"})
	defer private.Close()
	img, err := images.JavaLog4j()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := private.Push(img, "private/api", "1"); err != nil {
		t.Fatal(err)
	}
	wrongCredentials := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(wrongCredentials, private.DockerConfig("vigil", "wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A server that accepts connections and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	emptyDB := t.TempDir()
	corruptDB := t.TempDir()
	if err := os.MkdirAll(filepath.Join(corruptDB, "6"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(corruptDB, "6", "vulnerability.db"), []byte("not a database"), 0o644); err != nil {
		t.Fatal(err)
	}
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()

	tests := []struct {
		name    string
		args    []string
		message string
	}{
		{"a bad reference", []string{"scan", "Shop/API:1", "--db", dbRoot}, `"Shop/API:1" is not a valid image reference`},
		{"a missing archive", []string{"scan", "docker-archive:/no/such.tar", "--db", dbRoot}, "no such file or directory"},
		{"an unreachable registry", []string{"scan", closedAddr + "/app:1", "--db", dbRoot}, "cannot reach the registry"},
		{"a registry that does not answer", []string{"scan", silent.Addr().String() + "/app:1", "--db", dbRoot, "--timeout", "1s"}, "the registry did not answer within 1s"},
		{"wrong credentials", []string{"scan", private.Host + "/private/api:1", "--db", dbRoot, "--registry-config", wrongCredentials}, "the registry refused the credentials"},
		{"no credentials", []string{"scan", private.Host + "/private/api:1", "--db", dbRoot}, "the registry refused the credentials"},
		{"a missing database", []string{"scan", source, "--db", emptyDB}, "no vulnerability database in " + emptyDB + ": it must hold 6/vulnerability.db"},
		{"a corrupt database", []string{"scan", source, "--db", corruptDB}, "cannot be read"},
		{"a database listing that is not there", []string{"scan", source, "--db-url", notFound.URL + "/latest.json", "--db-cache", t.TempDir()}, "reading the listing"},
		{"no database", []string{"scan", source}, "exactly one of --db DIR and --db-url URL"},
		{"two databases", []string{"scan", source, "--db", dbRoot, "--db-url", "http://127.0.0.1:1/latest.json"}, "exactly one of"},
		{"a bad output format", []string{"scan", source, "--db", dbRoot, "-o", "xml"}, `--output "xml": use table or json`},
		{"a bad SBOM format", []string{"scan", source, "--db", dbRoot, "--sbom", "x", "--sbom-format", "csv"}, `--sbom-format "csv"`},
		{"a bad severity", []string{"scan", source, "--db", dbRoot, "--fail-on", "severe"}, `--fail-on "severe"`},
		{"a bad size", []string{"scan", source, "--db", dbRoot, "--max-image-size", "big"}, `size "big"`},
		{"an image above the size bound", []string{"scan", source, "--db", dbRoot, "--max-image-size", "1Ki"}, "the image is"},
		{"no image", []string{"scan"}, "accepts 1 arg(s), received 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, stdout, stderr := vigil(append(tc.args, "-q")...)
			if code != app.ExitError {
				t.Errorf("exit %d, want %d", code, app.ExitError)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			// One line, and for a command line the command does not take, its usage line.
			message, usage, _ := strings.Cut(strings.TrimSpace(stderr), "\n")
			if strings.Contains(usage, "\n") || (usage != "" && !strings.HasPrefix(usage, "Usage: vigil-scanner scan ")) ||
				!strings.HasPrefix(message, "vigil-scanner: ") || !strings.Contains(message, tc.message) {
				t.Errorf("stderr = %q, want one line containing %q", stderr, tc.message)
			}
			if elapsed := time.Since(start); elapsed > 20*time.Second {
				t.Errorf("took %s", elapsed)
			}
		})
	}
}

func TestScanCommandUpdatesItsDatabaseFromAListing(t *testing.T) {
	served := t.TempDir()
	publish(t, served, true)
	// A GET of anything but the listing downloads the database archive (the downloader asks
	// with HEAD first).
	var downloads atomic.Int32
	var mu sync.Mutex
	var requests []string
	files := http.FileServer(http.Dir(served))
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path != "/latest.json" {
			downloads.Add(1)
		}
		mu.Lock()
		requests = append(requests, r.Method+" "+r.URL.String())
		mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	defer server.Close()
	cache := t.TempDir()
	source := ociLayout(t, images.DebianOpenSSL)
	for run := 1; run <= 2; run++ {
		code, stdout, stderr := vigil("scan", source, "--db-url", server.URL+"/latest.json", "--db-cache", cache)
		if code != app.ExitOK || !strings.Contains(stdout, "CVE-2023-4911") || !strings.Contains(stdout, "CVE-2023-0286") {
			t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
		}
		// The second run reuses the cached database: it reads the listing, downloads nothing.
		if got := downloads.Load(); got != 1 {
			mu.Lock()
			seen := slices.Clone(requests)
			mu.Unlock()
			t.Fatalf("after run %d the database was downloaded %d times, want once: %v", run, got, seen)
		}
	}
	server.Close()
	code, stdout, stderr := vigil("scan", source, "--db-url", server.URL+"/latest.json", "--db-cache", cache)
	if code != app.ExitOK || !strings.Contains(stdout, "CVE-2023-4911") || !strings.Contains(stderr, "using the cached database") {
		t.Errorf("with the listing server down: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
