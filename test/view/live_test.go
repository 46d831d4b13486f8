package view

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v6distribution "github.com/anchore/grype/grype/db/v6/distribution"
	"github.com/chromedp/chromedp"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/test/fixtures/fixturedb"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
	"github.com/vigil-dev/vigil/test/testenv"
)

// startManager runs vigil-manager against the test API server with in-process scans and the
// fixture vulnerability database served from listingURL; it stops with the test.
func startManager(t *testing.T, listingURL string) {
	t.Helper()
	g := NewWithT(t)
	binary, err := testenv.BuildBinary("./cmd/manager")
	g.Expect(err).NotTo(HaveOccurred())
	certDir := t.TempDir()
	_, err = testenv.WriteServingCertificate(certDir, "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	ports, err := testenv.FreePorts(3)
	g.Expect(err).NotTo(HaveOccurred())
	cmd := exec.Command(binary,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]), fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		"--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", ports[2]), "--webhook-cert-dir="+certDir,
		"--sbom-dir="+filepath.Join(t.TempDir(), "sboms"), "--db-dir="+filepath.Join(t.TempDir(), "db"),
		"--db-listing-url="+listingURL, "--db-update-interval=1m", "--findings-refresh-interval=1h")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.KubeconfigPath, "POD_NAMESPACE=vigil-system", "TMPDIR="+t.TempDir())
	stderr, err := cmd.StderrPipe()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cmd.Start()).To(Succeed())
	var mu sync.Mutex
	var logs []string
	exited := make(chan struct{})
	go func() {
		scanner := bufio.NewScanner(stderr)
		scanner.Buffer(make([]byte, 1<<20), 1<<20)
		for scanner.Scan() {
			mu.Lock()
			logs = append(logs, scanner.Text())
			mu.Unlock()
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			mu.Lock()
			t.Logf("vigil-manager logs:\n%s", strings.Join(logs, "\n"))
			mu.Unlock()
		}
	})
	g.Eventually(func() (int, error) {
		response, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]))
		if err != nil {
			return 0, err
		}
		_ = response.Body.Close()
		return response.StatusCode, nil
	}, time.Minute, 200*time.Millisecond).Should(Equal(http.StatusOK))
}

func TestARowAppearsWhenAVulnerableWorkloadRunsAndGoesWhenItStops(t *testing.T) {
	env.Isolate(t)
	g := NewWithT(t)
	ctx := context.Background()

	// A registry with the Log4Shell image and the fixture database, and the manager.
	reg := registry.Start(registry.Options{})
	t.Cleanup(reg.Close)
	img, err := images.JavaLog4j()
	g.Expect(err).NotTo(HaveOccurred())
	digest, err := reg.Push(img, "live/api", "1.0")
	g.Expect(err).NotTo(HaveOccurred())
	image := reg.Host + "/live/api:1.0"
	imageIDs := map[string]string{image: digest}
	root, err := testenv.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	built, err := fixturedb.Build(t.TempDir(), time.Now(), filepath.Join(root, "test", "fixtures", "advisories"))
	g.Expect(err).NotTo(HaveOccurred())
	distribution := t.TempDir()
	_, err = built.Package(distribution)
	g.Expect(err).NotTo(HaveOccurred())
	dbServer := httptest.NewServer(http.FileServer(http.Dir(distribution)))
	t.Cleanup(dbServer.Close)
	startManager(t, dbServer.URL+"/"+v6distribution.LatestFileName)

	// The user watches the list of critical vulnerabilities before anything vulnerable runs.
	tab := newTab(t)
	g.Expect(chromedp.Do(tab, chromedp.Navigate(dashboardURL+"/?severity=critical&q=log4j"), chromedp.WaitVisible("#total"))).To(Succeed())
	g.Expect(rows(tab)).To(BeEmpty())

	// A Deployment runs the vulnerable image: its row appears without a reload.
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "live"}})).To(Succeed())
	labels := map[string]string{"app": "api"}
	api := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "live", Name: "api"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
			},
		},
	}
	g.Expect(env.Client.Create(ctx, api)).To(Succeed())
	pods, err := testenv.RunDeployment(ctx, env.Client, api, 2, imageIDs)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = testenv.StopPods(context.Background(), env.Client, pods...) })
	g.Expect(chromedp.Run(tab, chromedp.Evaluate[string](`window.vigilMarker = "same page"`))).To(Equal("same page"))
	g.Eventually(func() ([]string, error) { return rows(tab) }, 3*time.Minute, 200*time.Millisecond).Should(Equal([]string{"CVE-2021-44228"}))
	g.Expect(chromedp.Run(tab, chromedp.Evaluate[string](`window.vigilMarker`))).To(Equal("same page"), "the page reloaded")
	screenshot(t, tab, "live-running")

	// The Deployment's pods stop: the row goes within two seconds, still without a reload.
	g.Expect(testenv.StopPods(ctx, env.Client, pods...)).To(Succeed())
	stopped := time.Now()
	g.Eventually(func() ([]string, error) { return rows(tab) }, 2*time.Second, 50*time.Millisecond).Should(BeEmpty())
	t.Logf("The row went %v after the pods stopped", time.Since(stopped).Round(time.Millisecond))
	g.Expect(chromedp.Run(tab, chromedp.Evaluate[string](`window.vigilMarker`))).To(Equal("same page"), "the page reloaded")
	screenshot(t, tab, "live-stopped")

	// Every finding of the stopped workload goes, not only the one on the screen.
	g.Eventually(func() ([]string, error) {
		list := &vigilv1alpha1.VulnerabilityList{}
		err := env.Client.List(ctx, list)
		var left []string
		for _, v := range list.Items {
			for _, w := range v.Status.Workloads {
				if w.Namespace == "live" {
					left = append(left, v.Name)
				}
			}
		}
		return left, err
	}, 10*time.Second, 100*time.Millisecond).Should(BeEmpty())
}
