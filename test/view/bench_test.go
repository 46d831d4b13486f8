package view

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/test/testenv"
)

// The scale of the benchmark: a large cluster's view.
const (
	benchVulnerabilities = 5000
	benchPods            = 5000
)

var packageNames = []string{"openssl", "libssl3", "zlib1g", "libc6", "curl", "libcurl4", "log4j-core", "spring-core", "jackson-databind",
	"lodash", "minimist", "express", "requests", "urllib3", "pyyaml", "golang.org/x/net", "golang.org/x/text", "busybox", "ncurses", "expat"}

// populate creates benchPods running pods in namespace bench and benchVulnerabilities
// Vulnerabilities whose workloads are those pods, with realistic details.
func populate(b *testing.B) {
	b.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); client.IgnoreAlreadyExists(err) != nil {
		b.Fatal(err)
	}
	digest := func(i int) string { return fmt.Sprintf("sha256:%064x", i) }
	image := func(i int) string { return fmt.Sprintf("registry.example/team-%d/service-%d:1.%d", i%40, i%200, i%7) }
	parallel(b, benchPods, func(i int) error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("service-%d-%d", i%200, i)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image(i % 200)}}},
		}
		err := testenv.RunPod(ctx, env.Client, pod, map[string]string{image(i % 200): image(i%200) + "@" + digest(i%200)})
		if err != nil && strings.Contains(err.Error(), "already exists") {
			return nil
		}
		return err
	})
	detected := metav1.NewTime(time.Now().Truncate(time.Second))
	parallel(b, benchVulnerabilities, func(i int) error {
		severity := vigilv1alpha1.Severities[i%5]
		score := float64(100-i%100) / 10
		id := fmt.Sprintf("CVE-%d-%d", 2015+i%10, 10000+i)
		name := packageNames[i%len(packageNames)]
		details := vigilv1alpha1.VulnerabilityDetails{
			ID: id, Aliases: []string{fmt.Sprintf("GHSA-%04x-%04x-%04x", i, i*7%65536, i*13%65536)}, Severity: severity, SeverityRank: severity.Rank(),
			Score: ptr.To(score), CVSS: []vigilv1alpha1.CVSS{{Source: "nvd@nist.gov", Version: "3.1", BaseScore: score, Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}},
			EPSS:           &vigilv1alpha1.EPSS{Score: float64(i%1000) / 1000, Percentile: float64(i%100) / 100},
			Description:    strings.Repeat(fmt.Sprintf("A flaw in %s allows a remote attacker to cause a denial of service or execute code. ", name), 5),
			Links:          []string{"https://nvd.nist.gov/vuln/detail/" + id, "https://github.com/advisories/GHSA-0000-0000-0000"},
			PackageSummary: name + " 1.2.3", FixedInSummary: "1.2.4",
			Packages: []vigilv1alpha1.VulnerablePackage{
				{Name: name, Type: "deb", Installed: "1.2.3", FixedIn: []string{"1.2.4"}, FixState: vigilv1alpha1.FixStateFixed, PURL: "pkg:deb/debian/" + name + "@1.2.3"},
				{Name: name + "-dev", Type: "deb", Installed: "1.2.3", FixState: vigilv1alpha1.FixStateNotFixed},
			},
		}
		details.Rank = vigilv1alpha1.RankOf(severity, details.Score)
		v := &vigilv1alpha1.Vulnerability{ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.VulnerabilityName(id), Labels: details.Labels()}}
		if err := env.Client.Create(ctx, v); err != nil {
			if strings.Contains(err.Error(), "already exists") {
				return nil
			}
			return err
		}
		v.Status.Details = details
		for j := range 1 + i%3 {
			n := (i + j*31) % benchPods
			v.Status.Images = append(v.Status.Images, vigilv1alpha1.AffectedImage{Image: image(n % 200), Digest: digest(n % 200)})
			v.Status.Workloads = append(v.Status.Workloads, vigilv1alpha1.AffectedWorkload{
				Namespace: "bench", Kind: "Pod", Name: fmt.Sprintf("service-%d-%d", n%200, n), Container: "app", Digest: digest(n % 200), LastDetected: detected,
			})
		}
		v.Status.ImageCount, v.Status.WorkloadCount = int32(len(v.Status.Images)), int32(len(v.Status.Workloads))
		return env.Client.Status().Update(ctx, v)
	})
}

// parallel runs f for 0..n-1 on eight workers and fails b on the first error.
func parallel(b *testing.B, n int, f func(int) error) {
	b.Helper()
	work := make(chan int)
	var failed sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if err := f(i); err != nil {
					failed.Do(func() { firstErr = err })
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
}

// dashboardProcess runs `vigil dashboard` as a user would, with the admin kubeconfig.
type dashboardProcess struct {
	cmd *exec.Cmd
	url string
}

func startDashboardProcess(b *testing.B) *dashboardProcess {
	b.Helper()
	binary, err := testenv.BuildBinary("./cmd/vigil")
	if err != nil {
		b.Fatal(err)
	}
	port, err := testenv.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(binary, "dashboard", "--kubeconfig", env.KubeconfigPath, "--port", strconv.Itoa(port), "--no-browser")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// It prints its URL once the first list of vulnerabilities is in.
	reader := bufio.NewReader(stdout)
	if _, err := reader.ReadString('\n'); err != nil {
		b.Fatalf("vigil dashboard printed no URL: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, reader) }()
	return &dashboardProcess{cmd: cmd, url: fmt.Sprintf("http://localhost:%d", port)}
}

// memory is the process's resident memory in MiB: its anonymous memory (what it allocated), the
// pages of its binary file it touched (the vigil binary holds grype and syft: clean pages the
// kernel may drop), and its peak.
func (p *dashboardProcess) memory(b *testing.B) (anon, file, peak float64) {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kib, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "RssAnon:":
			anon = kib / 1024
		case "RssFile:":
			file = kib / 1024
		case "VmHWM:":
			peak = kib / 1024
		}
	}
	return anon, file, peak
}

func get(b *testing.B, url string) int {
	b.Helper()
	response, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, response.Body)
	_ = response.Body.Close()
	if response.StatusCode != http.StatusOK {
		b.Fatalf("GET %s = %d", url, response.StatusCode)
	}
	return int(n)
}

// BenchmarkDashboardAtScale measures `vigil dashboard` over 5,000 Vulnerabilities and 5,000
// running pods on the real API server: the first page of the list, a search, a filtered list,
// the CSV of a filtered list and a detail page, each a full HTTP request, and the dashboard
// process's memory.
//
//	go test ./test/view/ -run '^$' -bench DashboardAtScale -benchtime 200x
func BenchmarkDashboardAtScale(b *testing.B) {
	populate(b)
	dashboard := startDashboardProcess(b)
	for _, bench := range []struct{ name, path string }{
		{"first-page", "/"},
		{"search-package", "/?q=jackson"},
		{"search-alias", "/?q=GHSA-0fa0"},
		{"search-results-only", "/?q=jackson&partial=results"},
		{"filter-critical-high-cvss9", "/?severity=critical&severity=high&cvss-min=9"},
		{"csv-critical", "/vulnerabilities.csv?severity=critical"},
		{"detail", "/vulnerabilities/cve-2019-14004"},
	} {
		b.Run(bench.name, func(b *testing.B) {
			bytes := 0
			for b.Loop() {
				bytes = get(b, dashboard.url+bench.path)
			}
			b.ReportMetric(float64(bytes)/1024, "KiB/page")
		})
	}
	// The dashboard's memory after all of the above: a benchmark of nothing, for its metrics.
	b.Run("memory", func(b *testing.B) {
		for b.Loop() {
		}
		anon, file, peak := dashboard.memory(b)
		b.ReportMetric(anon, "anon-rss-MiB")
		b.ReportMetric(file, "file-rss-MiB")
		b.ReportMetric(peak, "peak-rss-MiB")
		if anon > dashboardAnonTargetMiB {
			b.Errorf("the dashboard's own memory (anonymous RSS) is %.1f MiB, over the %d MiB target", anon, dashboardAnonTargetMiB)
		}
	})
}

// dashboardAnonTargetMiB is the target for the dashboard's own memory (what it allocated: the
// watch cache, the search index, the HTTP server) at the benchmark's scale (docs/benchmarks.md):
// the benchmark fails over it.
const dashboardAnonTargetMiB = 100
