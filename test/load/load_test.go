// Package load holds load benchmarks that run the whole manager as a process against the test
// control plane.
package load

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-dev/vigil/test/testenv"
	"github.com/vigil-dev/vigil/webhook"
)

// Load settings; VIGIL_LOAD_RATE and VIGIL_LOAD_DURATION override them.
var (
	loadRate     = envInt("VIGIL_LOAD_RATE", 1000)
	loadDuration = envDuration("VIGIL_LOAD_DURATION", 30*time.Second)
	loadWorkers  = 64
)

// BenchmarkWebhookLoad sends AdmissionReview requests over TLS on loopback to a vigil-manager
// process at a fixed rate (1,000 per second for 30 seconds by default), and reports the
// end-to-end and in-handler latency percentiles, the errors, and the manager's memory.
//
//	go test -run '^$' -bench WebhookLoad -benchtime 1x ./test/load/
func BenchmarkWebhookLoad(b *testing.B) {
	env, err := testenv.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer env.Stop()
	defer testenv.RemoveBinaries()
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
		"--zap-log-level=error")
	manager.Env = append(os.Environ(), "KUBECONFIG="+env.KubeconfigPath)
	manager.Stderr = os.Stderr
	if err := manager.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = manager.Process.Kill(); _ = manager.Wait() }()
	if err := waitReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])); err != nil {
		b.Fatal(err)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout: 3 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: loadWorkers, MaxConnsPerHost: loadWorkers,
		},
	}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", ports[2], webhook.Path)
	bodies := requestBodies(500)

	memory := &memorySampler{pid: manager.Process.Pid}
	stopSampling := memory.run(time.Second)
	b.ResetTimer()
	result := runLoad(client, url, bodies, loadRate, loadDuration)
	b.StopTimer()
	stopSampling()

	handlerP50, handlerP99, err := handlerQuantiles(fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0]))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(result.sent)/loadDuration.Seconds(), "requests/s")
	b.ReportMetric(result.percentile(0.50).Seconds()*1000, "e2e-p50-ms")
	b.ReportMetric(result.percentile(0.99).Seconds()*1000, "e2e-p99-ms")
	b.ReportMetric(handlerP50*1000, "handler-p50-ms")
	b.ReportMetric(handlerP99*1000, "handler-p99-ms")
	b.ReportMetric(float64(result.errors.Load()), "errors")
	b.ReportMetric(float64(result.denied.Load()), "not-allowed")
	b.ReportMetric(float64(memory.first)/1024, "rss-start-MiB")
	b.ReportMetric(float64(memory.max)/1024, "rss-max-MiB")
	b.ReportMetric(float64(memory.last)/1024, "rss-end-MiB")
}

// requestBodies are AdmissionReviews of Pods and Deployments over images distinct images.
func requestBodies(images int) [][]byte {
	var bodies [][]byte
	for i := range images {
		spec := corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: fmt.Sprintf("registry.example/load/app-%d:1.%d", i%100, i)},
			{Name: "proxy", Image: "registry.example/mesh/proxy:1.0"},
		}}
		var raw []byte
		kind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
		if i%2 == 0 {
			raw, _ = json.Marshal(corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "load"}, Spec: spec})
		} else {
			kind = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
			raw, _ = json.Marshal(appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("d%d", i), Namespace: "load"},
				Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec}},
			})
		}
		body, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: types.UID(fmt.Sprintf("uid-%d", i)), Kind: kind, Namespace: "load",
				Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
			},
		})
		bodies = append(bodies, body)
	}
	return bodies
}

type loadResult struct {
	mu        sync.Mutex
	latencies []time.Duration
	sent      int
	errors    atomic.Int64
	denied    atomic.Int64
}

func (r *loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	return r.latencies[int(math.Ceil(p*float64(len(r.latencies))))-1]
}

// runLoad sends rate requests per second for duration, each at its scheduled time; a request's
// latency runs from its scheduled time, so a slow answer delays and counts against the next ones.
func runLoad(client *http.Client, url string, bodies [][]byte, rate int, duration time.Duration) *loadResult {
	result := &loadResult{}
	total := int(duration.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	jobs := make(chan int, total)
	var wg sync.WaitGroup
	for range loadWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				scheduled := start.Add(time.Duration(i) * interval)
				time.Sleep(time.Until(scheduled))
				response, err := client.Post(url, "application/json", bytes.NewReader(bodies[i%len(bodies)]))
				if err != nil {
					result.errors.Add(1)
					continue
				}
				answer, err := io.ReadAll(response.Body)
				_ = response.Body.Close()
				latency := time.Since(scheduled)
				if err != nil || response.StatusCode != http.StatusOK {
					result.errors.Add(1)
					continue
				}
				if !bytes.Contains(answer, []byte(`"allowed":true`)) {
					result.denied.Add(1)
				}
				result.mu.Lock()
				result.latencies = append(result.latencies, latency)
				result.mu.Unlock()
			}
		}()
	}
	for i := range total {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	result.sent = total
	return result
}

// handlerQuantiles estimates the p50 and p99 of vigil_webhook_request_duration_seconds from its
// histogram buckets, by linear interpolation within a bucket.
func handlerQuantiles(metricsURL string) (float64, float64, error) {
	response, err := http.Get(metricsURL)
	if err != nil {
		return 0, 0, err
	}
	defer response.Body.Close()
	text, err := io.ReadAll(response.Body)
	if err != nil {
		return 0, 0, err
	}
	type bucket struct{ le, count float64 }
	var buckets []bucket
	for _, line := range strings.Split(string(text), "\n") {
		rest, ok := strings.CutPrefix(line, `vigil_webhook_request_duration_seconds_bucket{le="`)
		if !ok {
			continue
		}
		le, count, _ := strings.Cut(rest, `"} `)
		upper, err := strconv.ParseFloat(le, 64)
		if err != nil {
			upper = math.Inf(1)
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(count), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("reading bucket %q: %w", line, err)
		}
		buckets = append(buckets, bucket{upper, n})
	}
	if len(buckets) == 0 {
		return 0, 0, fmt.Errorf("no request duration histogram in %s", metricsURL)
	}
	quantile := func(q float64) float64 {
		total := buckets[len(buckets)-1].count
		target := q * total
		lower, below := 0.0, 0.0
		for _, b := range buckets {
			if b.count >= target {
				if math.IsInf(b.le, 1) {
					return lower
				}
				return lower + (b.le-lower)*(target-below)/math.Max(b.count-below, 1)
			}
			lower, below = b.le, b.count
		}
		return lower
	}
	return quantile(0.50), quantile(0.99), nil
}

// memorySampler records a process's resident memory (VmRSS, KiB) at an interval.
type memorySampler struct {
	pid              int
	first, max, last int64
}

func (m *memorySampler) sample() {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.pid))
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return
			}
			if m.first == 0 {
				m.first = kib
			}
			m.max = max(m.max, kib)
			m.last = kib
		}
	}
}

func (m *memorySampler) run(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	m.sample()
	go func() {
		defer close(finished)
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				m.sample()
				return
			case <-ticker.C:
				m.sample()
			}
		}
	}()
	return func() { close(done); <-finished }
}

func waitReady(url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if response, err := http.Get(url); err == nil {
			_ = response.Body.Close()
			if response.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s did not become ready", url)
}

func envInt(name string, fallback int) int {
	if value, err := strconv.Atoi(os.Getenv(name)); err == nil && value > 0 {
		return value
	}
	return fallback
}

func envDuration(name string, fallback time.Duration) time.Duration {
	if value, err := time.ParseDuration(os.Getenv(name)); err == nil && value > 0 {
		return value
	}
	return fallback
}
