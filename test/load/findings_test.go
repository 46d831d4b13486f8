package load

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/testenv"
)

// Scale of BenchmarkRuntimeFindings; VIGIL_BENCH_IMAGES and VIGIL_BENCH_PODS_PER_IMAGE override it.
var (
	benchImages       = envInt("VIGIL_BENCH_IMAGES", 500)
	benchPodsPerImage = envInt("VIGIL_BENCH_PODS_PER_IMAGE", 10)
	benchStops        = 50
)

// BenchmarkRuntimeFindings runs a vigil-manager (in-process scans) against 5,000 running pods over
// 500 images (each image its own Deployment of 10 pods, every image vulnerable) and measures: the
// time from the last pod of a workload stopping to its entry leaving the Vulnerability, the
// manager's memory, the API writes per second once it has settled, and the time to match 500
// stored SBOMs again after a database swap.
//
//	go test -run '^$' -bench RuntimeFindings -benchtime 1x -timeout 30m ./test/load/
func BenchmarkRuntimeFindings(b *testing.B) {
	ctx := context.Background()
	// The registry holds 500 distinct vulnerable images; the database server the fixture database.
	bed := newBed(b)
	env, reg := bed.env, bed.reg
	recipes := []func() (v1.Image, error){images.JavaLog4j, images.NodeMinimist, images.DebianOpenSSL, images.AlpineOpenSSL, images.PythonPyYAML}
	imageRefs := make([]string, benchImages)
	imageIDs := map[string]string{}
	for i := range benchImages {
		base, err := recipes[i%len(recipes)]()
		if err != nil {
			b.Fatal(err)
		}
		img, err := images.Append(base, images.Layer{"/etc/bench": []byte(strconv.Itoa(i))})
		if err != nil {
			b.Fatal(err)
		}
		repository := fmt.Sprintf("bench/app-%d", i)
		pinned, err := reg.Push(img, repository, "1")
		if err != nil {
			b.Fatal(err)
		}
		imageRefs[i] = reg.Host + "/" + repository + ":1"
		imageIDs[imageRefs[i]] = pinned
	}
	advisories := bed.fixtures("advisories")
	bed.publishDB(advisories)

	manager, logs := startBenchManager(b, env, bed.dbListingURL)
	defer func() { _ = manager.Process.Kill(); _ = manager.Wait() }()

	// 500 Deployments of 10 running pods each.
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); err != nil {
		b.Fatal(err)
	}
	podsOf := make([][]*corev1.Pod, benchImages)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, benchImages)
	for i := range benchImages {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			labels := map[string]string{"app": fmt.Sprintf("app-%d", i)}
			deployment := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("app-%d", i)},
				Spec: appsv1.DeploymentSpec{
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: imageRefs[i]}}},
					},
				},
			}
			if err := env.Client.Create(ctx, deployment); err != nil {
				errs <- err
				return
			}
			pods, err := testenv.RunDeployment(ctx, env.Client, deployment, benchPodsPerImage, imageIDs)
			if err != nil {
				errs <- err
				return
			}
			podsOf[i] = pods
		}(i)
		if i%16 == 15 {
			wg.Wait()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.Logf("Created %d running pods in %s", benchImages*benchPodsPerImage, time.Since(start).Round(time.Second))

	// Every image is scanned and every Deployment reported.
	start = time.Now()
	err := wait.PollUntilContextTimeout(ctx, time.Second, 20*time.Minute, true, func(ctx context.Context) (bool, error) {
		return reportedWorkloads(ctx, env.Client) == benchImages, nil
	})
	if err != nil {
		b.Fatalf("the findings did not converge: %v\n%s", err, logs.tail())
	}
	b.Logf("Scanned %d images and reported every workload in %s", benchImages, time.Since(start).Round(time.Second))
	time.Sleep(5 * time.Second)

	// Steady state: API writes per second over 20 seconds.
	writesBefore, kindsBefore, err := apiWrites(ctx, env)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(20 * time.Second)
	rss := processRSS(manager.Process.Pid) // 25 seconds after the last scan
	writesAfter, kindsAfter, err := apiWrites(ctx, env)
	if err != nil {
		b.Fatal(err)
	}
	steadyWrites := (writesAfter - writesBefore) / 20
	for kind, count := range kindsAfter {
		if count != kindsBefore[kind] {
			b.Logf("Steady-state writes: %s: %.0f", kind, count-kindsBefore[kind])
		}
	}

	// Stops: the pods of one Deployment stop; time until the Deployment leaves its Vulnerability.
	b.ResetTimer()
	var latencies []time.Duration
	for i := 0; i < benchStops && i < benchImages; i++ {
		workload := fmt.Sprintf("app-%d", i)
		stopped := time.Now()
		if err := testenv.StopPods(ctx, env.Client, podsOf[i]...); err != nil {
			b.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			return !listsWorkload(ctx, env.Client, workload), nil
		})
		if err != nil {
			b.Fatalf("%s stayed reported: %v", workload, err)
		}
		latencies = append(latencies, time.Since(stopped))
	}
	b.StopTimer()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })

	// A database swap: every stored SBOM is matched again.
	scans := &vigilv1alpha1.ImageScanList{}
	if err := env.Client.List(ctx, scans); err != nil {
		b.Fatal(err)
	}
	previous := scans.Items[0].Status.Database.Built
	pullsBefore := 0
	for i := range benchImages {
		pullsBefore += reg.Pulls(fmt.Sprintf("bench/app-%d", i))
	}
	published := time.Now()
	bed.publishDB(advisories, bed.fixtures("advisories-update"))
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		scans := &vigilv1alpha1.ImageScanList{}
		if err := env.Client.List(ctx, scans); err != nil {
			return false, err
		}
		for _, scan := range scans.Items {
			if scan.Status.Database == nil || scan.Status.Database.Built.Equal(&previous) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	rematch := time.Since(published)
	pullsAfter := 0
	for i := range benchImages {
		pullsAfter += reg.Pulls(fmt.Sprintf("bench/app-%d", i))
	}

	b.ReportMetric(float64(benchImages*benchPodsPerImage), "pods")
	b.ReportMetric(float64(latencies[len(latencies)/2].Milliseconds()), "stop-to-removal-p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Milliseconds()), "stop-to-removal-p99-ms")
	b.ReportMetric(float64(rss)/1024, "manager-rss-MiB")
	b.ReportMetric(steadyWrites, "steady-writes/s")
	b.ReportMetric(rematch.Seconds(), "rematch-500-s")
	b.ReportMetric(float64(pullsAfter-pullsBefore), "rematch-pulls")
	if rssMiB := float64(rss) / 1024; rssMiB > managerRSSTargetMiB {
		b.Errorf("the manager's resident memory in steady state is %.1f MiB, over the %d MiB target", rssMiB, managerRSSTargetMiB)
	}
}

// managerRSSTargetMiB is the manager's resident memory target in steady state, with the pods and
// images of the benchmark's defaults (docs/benchmarks.md): the benchmark fails over it.
const managerRSSTargetMiB = 256

// startBenchManager runs vigil-manager against env, updating its database from listingURL.
func startBenchManager(b *testing.B, env *testenv.Environment, listingURL string) (*exec.Cmd, *logTail) {
	binary, err := testenv.BuildBinary("./cmd/manager")
	if err != nil {
		b.Fatal(err)
	}
	certDir := b.TempDir()
	if _, err := testenv.WriteServingCertificate(certDir, "127.0.0.1"); err != nil {
		b.Fatal(err)
	}
	ports, err := testenv.FreePorts(3)
	if err != nil {
		b.Fatal(err)
	}
	manager := exec.Command(binary,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]), fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		"--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", ports[2]), "--webhook-cert-dir="+certDir,
		"--sbom-dir="+filepath.Join(b.TempDir(), "sboms"), "--db-dir="+filepath.Join(b.TempDir(), "db"),
		"--db-listing-url="+listingURL, "--db-update-interval=1s", "--scan-concurrency=2", "--zap-log-level=info")
	manager.Env = append(os.Environ(), "KUBECONFIG="+env.KubeconfigPath)
	logs := &logTail{}
	stderr, err := manager.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := manager.Start(); err != nil {
		b.Fatal(err)
	}
	go logs.follow(stderr)
	if err := waitReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])); err != nil {
		b.Fatal(err)
	}
	return manager, logs
}

// reportedWorkloads counts the Deployments that some Vulnerability lists.
func reportedWorkloads(ctx context.Context, c client.Client) int {
	vulnerabilities := &vigilv1alpha1.VulnerabilityList{}
	if err := c.List(ctx, vulnerabilities); err != nil {
		return 0
	}
	workloads := map[string]bool{}
	for _, v := range vulnerabilities.Items {
		for _, w := range v.Status.Workloads {
			workloads[w.Name] = true
		}
	}
	return len(workloads)
}

// listsWorkload tells whether some Vulnerability lists the Deployment name.
func listsWorkload(ctx context.Context, c client.Client, name string) bool {
	vulnerabilities := &vigilv1alpha1.VulnerabilityList{}
	if err := c.List(ctx, vulnerabilities); err != nil {
		return true
	}
	for _, v := range vulnerabilities.Items {
		for _, w := range v.Status.Workloads {
			if w.Name == name {
				return true
			}
		}
	}
	return false
}

// apiWrites reads the API server's count of write requests (create, update, patch, delete), in
// all and by verb and resource.
func apiWrites(ctx context.Context, env *testenv.Environment) (float64, map[string]float64, error) {
	clientset, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return 0, nil, err
	}
	body, err := clientset.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("reading the API server's metrics: %w", err)
	}
	var writes float64
	byKind := map[string]float64{}
	scanner := bufio.NewScanner(strings.NewReader(string(body)))
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		for _, verb := range []string{`verb="POST"`, `verb="PUT"`, `verb="PATCH"`, `verb="DELETE"`} {
			// Reviews are reads in effect, and leases are the API server's own heartbeat here (the
			// benchmark's manager runs without leader election).
			if strings.Contains(line, verb) && !strings.Contains(line, `resource="tokenreviews"`) &&
				!strings.Contains(line, `resource="subjectaccessreviews"`) && !strings.Contains(line, `resource="leases"`) {
				fields := strings.Fields(line)
				value, err := strconv.ParseFloat(fields[len(fields)-1], 64)
				if err == nil {
					writes += value
					byKind[verb+" "+labelValue(line, "resource")+"/"+labelValue(line, "subresource")] += value
				}
			}
		}
	}
	return writes, byKind, nil
}

func labelValue(line, label string) string {
	_, rest, ok := strings.Cut(line, label+`="`)
	if !ok {
		return ""
	}
	value, _, _ := strings.Cut(rest, `"`)
	return value
}

func processRSS(pid int) int64 {
	sampler := &memorySampler{pid: pid}
	sampler.sample()
	return sampler.last
}

// logTail keeps the last lines of a process's output.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) follow(r io.Reader) {
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, scanner.Text())
		if len(l.lines) > 200 {
			l.lines = l.lines[len(l.lines)-200:]
		}
		l.mu.Unlock()
	}
}

func (l *logTail) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
