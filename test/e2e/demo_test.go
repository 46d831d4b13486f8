// Package e2e runs Vigil end to end as a user does: the local demo, from its command.
package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vigil-dev/vigil/test/testenv"
)

// TestDemoShowsTheVulnerabilityViewAndCleansUp runs `demo --once` (what `make demo
// DEMO_FLAGS=--once` runs) and checks the view, the detail and that nothing is left behind.
func TestDemoShowsTheVulnerabilityViewAndCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo starts a control plane")
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	demo, err := testenv.BuildBinary("./cmd/demo")
	if err != nil {
		t.Fatal(err)
	}
	defer testenv.RemoveBinaries()
	cmd := exec.Command(demo, "--once")
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo --once: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()

	for _, pattern := range []string{
		`(?m)^NAME\s+ID\s+SEVERITY\s+CVSS\s+PACKAGE\s+FIXED-IN\s+FIXABLE\s+WORKLOADS\s+AGE$`,
		`(?m)^cve-2021-44228\s+CVE-2021-44228\s+Critical\s+10\s+log4j-core 2.14.1\s+2.15.0\s+true\s+1\s`,
		`(?m)^cve-2021-44906\s+CVE-2021-44906\s+Critical\s+9.8\s+minimist 1.2.5\s+1.2.6\s+true\s+1\s`,
		`(?m)^cve-2020-14343\s+CVE-2020-14343\s+Critical\s+9.8\s+pyyaml 5.3.1\s+5.4\s+true\s+1\s`,
		`(?m)^cve-2022-32149\s+CVE-2022-32149\s+High\s+7.5\s+golang.org/x/text v0.3.7\s+0.3.8\s+true\s+1\s`,
		// Only the Debian StatefulSet: the Alpine image of the opted-out namespace is not reported.
		`(?m)^cve-2023-0286\s+CVE-2023-0286\s+High\s+7.4\s+libssl3 3.0.7-1\s+3.0.8-1\s+true\s+1\s`,
		// The detail of the most severe vulnerability, with its three sections.
		`kubectl describe vulnerability cve-2021-44228`,
		`(?m)^  Details:$`, `Known Exploited:\s+true`, `Name:\s+log4j-core`, `Installed:\s+2.14.1`,
		`(?m)^  Images:$`, `Image:\s+127.0.0.1:\d+/shop/api:1.0`,
		`(?m)^  Workloads:$`, `Kind:\s+Deployment`, `Namespace:\s+shop`, `Last Detected:`,
		`export KUBECONFIG=`, `kubectl delete pods -n shop -l app=api`,
	} {
		if !regexp.MustCompile(pattern).MatchString(out) {
			t.Errorf("the demo's output lacks %s", pattern)
		}
	}
	// Sorted by severity, then by CVSS score: log4j's 10.0 leads the Critical ones.
	if !regexp.MustCompile(`(?m)^NAME\s.*\ncve-2021-44228\s`).MatchString(out) {
		t.Errorf("the view does not list CVE-2021-44228 first")
	}
	if strings.Count(out, "\ncve-") != 5 {
		t.Errorf("the view lists other than 5 vulnerabilities:\n%s", out)
	}

	// Everything it started is stopped and its files are gone.
	match := regexp.MustCompile(`work folder: (\S+)\)`).FindStringSubmatch(out)
	if match == nil {
		t.Fatalf("the demo does not name its work folder:\n%s", out)
	}
	workDir := match[1]
	if _, err := os.Stat(workDir); !os.IsNotExist(err) {
		t.Errorf("the work folder %s is still there (%v)", workDir, err)
	}
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, path := range cmdlines {
		content, err := os.ReadFile(path)
		if err == nil && bytes.Contains(content, []byte(workDir)) {
			t.Errorf("a process still runs from the demo: %s", bytes.ReplaceAll(content, []byte{0}, []byte{' '}))
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s\n%s", out, stderr.String())
	}
}
