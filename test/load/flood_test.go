package load

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/test/testenv"
	"github.com/vigil-dev/vigil/webhook"
)

// Flood settings; VIGIL_FLOOD_DURATION overrides the duration of each phase.
var (
	floodDuration = envDuration("VIGIL_FLOOD_DURATION", 15*time.Second)
	// floodWorkers send junk at once, more than the webhook's concurrency bound.
	floodWorkers = 96
	// webhookConcurrency and memoryLimit are the chart's defaults (webhook.concurrency,
	// resources.manager.limits.memory, which the chart passes as GOMEMLIMIT).
	webhookConcurrency = 64
	memoryLimit        = int64(768 << 20)
	// reportBody is what a junk report claims to send; the manager must read none of it.
	reportBody = int64(512 << 20)
	// admissionBody is an admission body above the webhook's bound, sent chunked so that its size
	// is known only by reading it.
	admissionBody = int64(16 << 20)
)

// The bounds of the manager's resident memory growth over its baseline. Junk reports cost
// connections, goroutines and token reviews in flight, never their bodies: they are refused
// from their header. Junk admission bodies cost at most webhook.MaxBodyBytesInFlight held at
// once, as much again of garbage before the collector runs, and the same overhead.
const (
	overheadBound   = 64 << 20
	reportsBound    = overheadBound
	admissionsBound = 2*webhook.MaxBodyBytesInFlight + overheadBound
)

// BenchmarkFlood floods a vigil-manager process on loopback with junk, in two phases of 15
// seconds, 96 senders each: scan reports with bad or missing tokens, each claiming a 512 MiB
// SBOM; then admission requests of 16 MiB (above the webhook's 7 MiB bound) sent chunked, so
// that their size is known only by reading them. It reports the manager's resident memory before,
// at most during each phase, and 10 seconds after, and fails when a phase's growth over the
// baseline passes its bound (reportsBound, admissionsBound) or the manager stops answering. The
// manager runs the job executor (which serves the reports) with the chart's defaults for webhook
// concurrency and memory (GOMEMLIMIT 768 MiB).
//
//	nice -n 10 go test -run '^$' -bench '^BenchmarkFlood$' -benchtime 1x -timeout 20m ./test/load/
func BenchmarkFlood(b *testing.B) {
	env, err := testenv.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer env.Stop()
	defer testenv.RemoveBinaries()
	ctx := b.Context()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vigil-system"}}); err != nil {
		b.Fatal(err)
	}
	binary, err := testenv.BuildBinary("./cmd/manager")
	if err != nil {
		b.Fatal(err)
	}
	certDir := b.TempDir()
	caPEM, err := testenv.WriteServingCertificate(certDir, "127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	ports, err := testenv.FreePorts(3)
	if err != nil {
		b.Fatal(err)
	}
	manager := exec.Command(binary,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]), "--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		"--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", ports[2]), "--webhook-cert-dir="+certDir,
		fmt.Sprintf("--webhook-concurrency=%d", webhookConcurrency),
		"--sbom-dir="+filepath.Join(b.TempDir(), "sboms"), "--db-dir="+filepath.Join(b.TempDir(), "db"),
		"--db-listing-url=http://127.0.0.1:1/latest.json",
		"--scan-executor=job", "--scanner-image=registry.example/vigil:bench", "--zap-log-level=error")
	manager.Env = append(os.Environ(), "KUBECONFIG="+env.KubeconfigPath, "POD_NAMESPACE=vigil-system",
		fmt.Sprintf("GOMEMLIMIT=%d", memoryLimit))
	if err := manager.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = manager.Process.Kill(); _ = manager.Wait() }()
	ready := fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])
	if err := waitReady(ready); err != nil {
		b.Fatal(err)
	}

	// The baseline: the settled manager, sampled for 5 seconds.
	time.Sleep(5 * time.Second)
	baseline := &memorySampler{pid: manager.Process.Pid}
	stopBaseline := baseline.run(500 * time.Millisecond)
	time.Sleep(5 * time.Second)
	stopBaseline()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: floodWorkers, MaxConnsPerHost: floodWorkers,
		},
	}
	defer client.CloseIdleConnections()
	base := fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	junkReport := func(ctx context.Context, n int) *http.Request {
		request, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+executor.ReportPath+"?kind=sbom",
			io.LimitReader(junk{}, reportBody))
		request.ContentLength = reportBody
		if n%4 != 0 {
			request.Header.Set("Authorization", "Bearer "+randomToken())
		}
		return request
	}
	junkAdmission := func(ctx context.Context, _ int) *http.Request {
		// A body of unknown length (chunked): the webhook must read it to learn its size.
		request, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+webhook.Path,
			io.NopCloser(io.LimitReader(junk{}, admissionBody)))
		return request
	}

	b.ResetTimer()
	reports := floodPhase(ctx, client, manager.Process.Pid, junkReport)
	admissions := floodPhase(ctx, client, manager.Process.Pid, junkAdmission)
	b.StopTimer()
	client.CloseIdleConnections()
	time.Sleep(10 * time.Second)
	after := &memorySampler{pid: manager.Process.Pid}
	after.sample()

	b.ReportMetric(float64(baseline.max)/1024, "rss-before-MiB")
	b.ReportMetric(float64(reports.memory.max)/1024, "rss-reports-max-MiB")
	b.ReportMetric(float64(admissions.memory.max)/1024, "rss-admissions-max-MiB")
	b.ReportMetric(float64(after.last)/1024, "rss-after-MiB")
	b.ReportMetric(float64(reports.sent.Load())/floodDuration.Seconds(), "junk-reports/s")
	b.ReportMetric(float64(admissions.sent.Load())/floodDuration.Seconds(), "junk-admissions/s")
	b.Logf("reports: answers by status %v, %d connections cut; admissions: answers by status %v, %d connections cut",
		reports.statuses, reports.errors.Load(), admissions.statuses, admissions.errors.Load())
	for _, phase := range []struct {
		name   string
		result *floodResult
		bound  int64
	}{{"junk reports", reports, reportsBound}, {"oversized admission requests", admissions, admissionsBound}} {
		if phase.result.sent.Load() == 0 {
			b.Fatalf("no %s were sent", phase.name)
		}
		if growth := (phase.result.memory.max - baseline.max) * 1024; growth > phase.bound {
			b.Errorf("the manager's memory grew by %d MiB during the flood of %s, above the bound of %d MiB (%d MiB before, %d MiB at most)",
				growth>>20, phase.name, phase.bound>>20, baseline.max>>10, phase.result.memory.max>>10)
		}
	}
	if err := waitReady(ready); err != nil {
		b.Fatalf("the manager does not answer after the flood: %v", err)
	}
}

// floodPhase sends the requests that junk makes from floodWorkers senders for floodDuration,
// sampling the resident memory of the process pid.
func floodPhase(ctx context.Context, client *http.Client, pid int, junk func(context.Context, int) *http.Request) *floodResult {
	result := &floodResult{statuses: map[int]int{}, memory: &memorySampler{pid: pid}}
	stop := result.memory.run(200 * time.Millisecond)
	defer stop()
	floodCtx, cancel := context.WithTimeout(ctx, floodDuration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range floodWorkers {
		wg.Go(func() {
			for n := i; floodCtx.Err() == nil; n += floodWorkers {
				result.send(client, junk(floodCtx, n))
			}
		})
	}
	wg.Wait()
	return result
}

// floodResult counts the junk requests of a phase, their answers, and the manager's memory.
type floodResult struct {
	sent, errors atomic.Int64
	mu           sync.Mutex
	statuses     map[int]int
	memory       *memorySampler
}

// send sends one junk request, counting it once it was written or answered.
func (f *floodResult) send(client *http.Client, request *http.Request) {
	response, err := client.Do(request)
	if request.Context().Err() != nil {
		return
	}
	f.sent.Add(1)
	if err != nil {
		// The manager closes a connection whose unread body it refused.
		f.errors.Add(1)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(response.Body, 1<<20))
	_ = response.Body.Close()
	f.mu.Lock()
	f.statuses[response.StatusCode]++
	f.mu.Unlock()
}

// junk reads as an endless run of spaces.
type junk struct{}

func (junk) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func randomToken() string {
	raw := make([]byte, 64)
	_, _ = rand.Read(raw)
	return "eyJhbGciOiJSUzI1NiJ9." + hex.EncodeToString(raw)
}
