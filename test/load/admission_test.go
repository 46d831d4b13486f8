package load

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/test/corpus"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
	"github.com/vigil-dev/vigil/test/testenv"
)

// admissionCases are the corpus images BenchmarkAdmissionToVulnerability admits, each with a
// vulnerability it must report; VIGIL_BENCH_IMAGES (comma-separated names) selects among them.
var admissionCases = []struct{ image, vulnerability string }{
	{"node-app", "CVE-2021-44906"},
	{"java-app", "CVE-2022-1471"},
}

// BenchmarkAdmissionToVulnerability measures, on the real API server with a vigil-manager
// scanning in process, the time from a Deployment's creation (its admission reaches Vigil's
// webhook) to the Vulnerability that lists it, for corpus images served by a loopback registry,
// and the grype CLI's time to scan the same image from the same registry. Each round pushes the
// image again with one more layer (a new digest, never scanned before) and runs both, one after
// the other, so that whatever else runs on the machine weighs on both alike. The manager's pods
// run as the test sets their status, as a kubelet would.
func BenchmarkAdmissionToVulnerability(b *testing.B) {
	dir := corpus.Require(b)
	root, err := testenv.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	bed := newBed(b)
	env, reg := bed.env, bed.reg
	built := bed.publishDB(bed.fixtures("advisories"), bed.fixtures("advisories-corpus"))
	grype := corpus.NewGrypeCLI(b, root, built.Dir)

	manager, webhookPort, caPEM := startAdmissionManager(b, env, bed.dbListingURL)
	defer func() { _ = manager.Process.Kill(); _ = manager.Wait() }()
	if _, err := env.InstallWebhook(ctx, "vigil-bench", webhookPort, caPEM); err != nil {
		b.Fatal(err)
	}
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "admission"}}); err != nil {
		b.Fatal(err)
	}
	// One admission of the small Go image first, so that the manager's first database download is
	// not timed.
	reference, pinned, err := pushUnique(reg, dir, "go-app", "warm-up")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := admit(ctx, env, "warm-up", reference, pinned, "CVE-2022-32149"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var report strings.Builder
		for _, c := range admissionCases {
			if only := os.Getenv("VIGIL_BENCH_IMAGES"); only != "" && !slices.Contains(strings.Split(only, ","), c.image) {
				continue
			}
			pinned := map[string]string{}
			line, err := grype.CompareAdmissions(c.image,
				func(name string) (string, error) {
					reference, digest, err := pushUnique(reg, dir, c.image, name)
					pinned[reference] = digest
					return reference, err
				},
				func(name, reference string) (time.Duration, error) {
					return admit(ctx, env, name, reference, pinned[reference], c.vulnerability)
				}, nil)
			if err != nil {
				b.Fatal(err)
			}
			report.WriteString(line)
		}
		fmt.Print("\nMedians of 3 rounds, interleaved (grype CLI, then admission), same registry and database:\n" + report.String())
	}
}

// pushUnique pushes the corpus image with one more layer, which makes its digest new, as
// corpus/NAME:1, and returns its reference and the reference by digest.
func pushUnique(reg *registry.Registry, dir, image, name string) (string, string, error) {
	img, err := corpus.Unique(dir, image, name)
	if err != nil {
		return "", "", err
	}
	pinned, err := reg.Push(img, "corpus/"+name, "1")
	if err != nil {
		return "", "", err
	}
	return reg.Host + "/corpus/" + name + ":1", pinned, nil
}

// admit creates a Deployment of reference, runs its pod, and returns the time from the creation
// until the Vulnerability id lists the Deployment; it stops the pod then.
func admit(ctx context.Context, env *testenv.Environment, name, reference, pinned, id string) (time.Duration, error) {
	deployment := testenv.Deployment("admission", name, reference)
	start := time.Now()
	if err := env.Client.Create(ctx, deployment); err != nil {
		return 0, err
	}
	pods, err := testenv.RunDeployment(ctx, env.Client, deployment, 1, map[string]string{reference: pinned})
	if err != nil {
		return 0, err
	}
	if err := waitForWorkload(ctx, env.Client, id, name, 5*time.Minute); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	took := time.Since(start)
	return took, testenv.StopPods(ctx, env.Client, pods...)
}

// waitForWorkload waits until the Vulnerability id lists the Deployment name.
func waitForWorkload(ctx context.Context, c client.Client, id, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		vulnerability := &vigilv1alpha1.Vulnerability{}
		if err := c.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.VulnerabilityName(id)}, vulnerability); err == nil {
			for _, w := range vulnerability.Status.Workloads {
				if w.Name == name {
					return nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no Vulnerability %s lists %s after %s", id, name, timeout)
}

// startAdmissionManager runs vigil-manager, scanning in process, with its webhook server on
// loopback, and returns it with the webhook's port and CA.
func startAdmissionManager(b *testing.B, env *testenv.Environment, listingURL string) (*exec.Cmd, int, []byte) {
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
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]), fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		"--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", ports[2]), "--webhook-cert-dir="+certDir,
		"--sbom-dir="+filepath.Join(b.TempDir(), "sboms"), "--db-dir="+filepath.Join(b.TempDir(), "db"),
		"--db-listing-url="+listingURL, "--scan-concurrency=1", "--zap-log-level=info")
	manager.Env = append(os.Environ(), "KUBECONFIG="+env.KubeconfigPath, "POD_NAMESPACE=vigil-system")
	manager.Stdout, manager.Stderr = io.Discard, io.Discard
	if err := manager.Start(); err != nil {
		b.Fatal(err)
	}
	if err := waitReady(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1])); err != nil {
		b.Fatal(err)
	}
	return manager, ports[2], caPEM
}
