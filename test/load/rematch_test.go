package load

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
	"github.com/vigil-dev/vigil/test/testenv"
)

// rematchSBOMs is the number of stored SBOMs BenchmarkTimeToFindingDuringARematch matches again;
// VIGIL_BENCH_REMATCH_SBOMS overrides it.
var rematchSBOMs = envInt("VIGIL_BENCH_REMATCH_SBOMS", 500)

// BenchmarkTimeToFindingDuringARematch measures, on the real API server with a vigil-manager
// scanning in process (its webhook installed), a new image's time from admission to its
// Vulnerability while a database swap has every one of 500 stored SBOMs matched again, against
// the same time with nothing else to do. Each of three rounds admits one new image with an idle
// manager, then publishes a new database, waits for the first re-match to land, admits another
// new image and times it, and waits for the re-match to end. The 500 images run (one pod each),
// so the re-match has no idle image to put last: the worst case for the new image.
//
//	go test -run '^$' -bench TimeToFindingDuringARematch -benchtime 1x -timeout 60m ./test/load/
func BenchmarkTimeToFindingDuringARematch(b *testing.B) {
	ctx := context.Background()
	bed := newBed(b)
	env, reg := bed.env, bed.reg
	recipes := []func() (v1.Image, error){images.JavaLog4j, images.NodeMinimist, images.DebianOpenSSL, images.AlpineOpenSSL, images.PythonPyYAML}
	imageIDs := map[string]string{}
	references := make([]string, rematchSBOMs)
	for i := range rematchSBOMs {
		reference, pinned, err := pushRecipe(reg, recipes[i%len(recipes)], fmt.Sprintf("stored/app-%d", i), strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		references[i], imageIDs[reference] = reference, pinned
	}
	advisories, update := bed.fixtures("advisories"), bed.fixtures("advisories-update")
	bed.publishDB(advisories)

	manager := startManagerWith(b, env, "--db-listing-url="+bed.dbListingURL,
		"--db-update-interval=1s", "--scan-concurrency=2", fmt.Sprintf("--max-images-per-namespace=%d", 4*rematchSBOMs))
	defer manager.stop()
	if _, err := env.InstallWebhook(ctx, "vigil-bench", manager.webhookPort, manager.caPEM); err != nil {
		b.Fatal(err)
	}
	for _, namespace := range []string{"stored", "admission"} {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
			b.Fatal(err)
		}
	}

	// The stored images run, one pod each, and are scanned.
	start := time.Now()
	if err := runPods(ctx, env.Client, "stored", "app", references, imageIDs); err != nil {
		b.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Minute, true, func(ctx context.Context) (bool, error) {
		matched, _ := matchedSince(ctx, env.Client, time.Time{})
		return matched >= rematchSBOMs, nil
	})
	if err != nil {
		b.Fatalf("the stored images were not all scanned: %v\n%s", err, manager.logs.tail())
	}
	b.Logf("Scanned and matched %d images in %s", rematchSBOMs, time.Since(start).Round(time.Second))

	newImage := func(name string) time.Duration {
		reference, pinned, err := pushRecipe(reg, images.NodeMinimist, "admission/"+name, name)
		if err != nil {
			b.Fatal(err)
		}
		took, err := admit(ctx, env, name, reference, pinned, "CVE-2021-44906")
		if err != nil {
			b.Fatalf("%v\n%s", err, manager.logs.tail())
		}
		return took
	}
	var idle, during, rematches []time.Duration
	var doneAtFinding []int
	for round := range 3 {
		idle = append(idle, newImage(fmt.Sprintf("idle-%d", round)))

		// A new database: every stored SBOM is matched again.
		published := time.Now()
		built := bed.publishDB(advisories, update).Built
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
			rematched, _ := matchedSince(ctx, env.Client, built)
			return rematched > 0, nil
		})
		if err != nil {
			b.Fatalf("no re-match started: %v\n%s", err, manager.logs.tail())
		}
		during = append(during, newImage(fmt.Sprintf("during-%d", round)))
		rematched, _ := matchedSince(ctx, env.Client, built)
		doneAtFinding = append(doneAtFinding, rematched)
		err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 30*time.Minute, true, func(ctx context.Context) (bool, error) {
			rematched, _ := matchedSince(ctx, env.Client, built)
			return rematched >= rematchSBOMs, nil
		})
		if err != nil {
			b.Fatalf("the re-match did not end: %v\n%s", err, manager.logs.tail())
		}
		rematches = append(rematches, time.Since(published))
		b.Logf("Round %d: new image idle %s; during the re-match %s (%d of %d SBOMs re-matched when its finding appeared); re-match of %d took %s",
			round+1, idle[round].Round(10*time.Millisecond), during[round].Round(10*time.Millisecond), rematched, rematchSBOMs,
			rematchSBOMs, rematches[round].Round(100*time.Millisecond))
	}
	median := func(d []time.Duration) time.Duration {
		sorted := slices.Clone(d)
		slices.Sort(sorted)
		return sorted[len(sorted)/2]
	}
	b.ReportMetric(float64(rematchSBOMs), "stored-sboms")
	b.ReportMetric(median(idle).Seconds(), "idle-s")
	b.ReportMetric(median(during).Seconds(), "during-rematch-s")
	b.ReportMetric(median(rematches).Seconds(), "rematch-s")
	fmt.Printf("\nA new image's admission → Vulnerability, medians of 3 rounds: idle %.2f s (%v), during a re-match of %d SBOMs %.2f s (%v; re-matched when the finding appeared: %v of %d); re-match %.1f s (%v)\n",
		median(idle).Seconds(), idle, rematchSBOMs, median(during).Seconds(), during, doneAtFinding, rematchSBOMs, median(rematches).Seconds(), rematches)
}

// pushRecipe pushes a fixture image with one more layer that makes its digest its own, as
// repository:1, and returns its reference and the reference by digest.
func pushRecipe(reg *registry.Registry, recipe func() (v1.Image, error), repository, unique string) (string, string, error) {
	base, err := recipe()
	if err != nil {
		return "", "", err
	}
	img, err := images.Append(base, images.Layer{"/etc/vigil-bench": []byte(unique)})
	if err != nil {
		return "", "", err
	}
	pinned, err := reg.Push(img, repository, "1")
	if err != nil {
		return "", "", err
	}
	return reg.Host + "/" + repository + ":1", pinned, nil
}

// runPods creates a running pod of each reference in namespace, named prefix-N, 16 at a time.
func runPods(ctx context.Context, c client.Client, namespace, prefix string, references []string, imageIDs map[string]string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(references))
	slots := make(chan struct{}, 16)
	for i, reference := range references {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("%s-%d", prefix, i)},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: reference}}},
			}
			if err := testenv.RunPod(ctx, c, pod, imageIDs); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// matchedSince counts the stored images' Scanned ImageScans matched against a database built at
// or after built (any database for the zero time); the new images admitted are not counted.
func matchedSince(ctx context.Context, c client.Client, built time.Time) (int, error) {
	scans := &vigilv1alpha1.ImageScanList{}
	if err := c.List(ctx, scans); err != nil {
		return 0, err
	}
	count := 0
	for _, scan := range scans.Items {
		stored := slices.ContainsFunc(scan.Spec.References, func(r vigilv1alpha1.ImageReference) bool { return r.Namespace == "stored" })
		if stored && scan.Status.Phase == vigilv1alpha1.ImageScanScanned && scan.Status.Database != nil &&
			!scan.Status.Database.Built.Time.Before(built.Truncate(time.Second)) {
			count++
		}
	}
	return count, nil
}

// benchManager is a vigil-manager process started by a benchmark.
type benchManager struct {
	cmd         *exec.Cmd
	logs        *logTail
	webhookPort int
	caPEM       []byte
	sbomDir     string
}

// startManagerWith runs vigil-manager against env with its webhook on loopback, its SBOMs in a
// folder of the benchmark's, and args after the defaults (a later flag wins);
// VIGIL_BENCH_MANAGER_LOG names a file that keeps its whole log.
func startManagerWith(b *testing.B, env *testenv.Environment, args ...string) *benchManager {
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
	m := &benchManager{logs: &logTail{}, webhookPort: ports[2], caPEM: caPEM, sbomDir: filepath.Join(b.TempDir(), "sboms")}
	m.cmd = exec.Command(binary, append([]string{
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]), fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		"--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", ports[2]), "--webhook-cert-dir=" + certDir,
		"--sbom-dir=" + m.sbomDir, "--db-dir=" + filepath.Join(b.TempDir(), "db"), "--zap-log-level=info",
	}, args...)...)
	m.cmd.Env = append(os.Environ(), "KUBECONFIG="+env.KubeconfigPath, "POD_NAMESPACE=vigil-system")
	stderr, err := m.cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	logs := io.Reader(stderr)
	if path := os.Getenv("VIGIL_BENCH_MANAGER_LOG"); path != "" {
		// The whole log, for a run to look into afterwards; each manager of a run appends.
		file, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = file.Close() })
		logs = io.TeeReader(stderr, bestEffort{file})
	}
	if err := m.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go m.logs.follow(logs)
	if err := waitReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])); err != nil {
		b.Fatalf("%v\n%s", err, m.logs.tail())
	}
	return m
}

// bestEffort writes what it can and never fails, so that a full disk stops the copy of a log,
// not the reading of the pipe that the process writes it to.
type bestEffort struct{ w io.Writer }

func (b bestEffort) Write(p []byte) (int, error) {
	_, _ = b.w.Write(p)
	return len(p), nil
}

func (m *benchManager) stop() {
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
}
