package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/cmd/manager/app"
	"github.com/vigil-dev/vigil/test/testenv"
)

// managerProcess is a vigil-manager running as a local process against the test API server.
type managerProcess struct {
	cmd         *exec.Cmd
	metricsURL  string
	probesURL   string
	webhookPort int
	certDir     string
	caPEM       []byte
	mu          sync.Mutex
	stderrLines []string
	exited      chan struct{}
}

// startManager runs vigil-manager as the test admin with a fresh webhook certificate and free
// loopback ports; extraArgs come last and win.
func startManager(t *testing.T, extraArgs ...string) *managerProcess {
	t.Helper()
	g := NewWithT(t)
	certDir := t.TempDir()
	caPEM, err := testenv.WriteServingCertificate(certDir, "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	ports, err := testenv.FreePorts(3)
	g.Expect(err).NotTo(HaveOccurred())
	args := append([]string{
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		"--webhook-host=127.0.0.1",
		fmt.Sprintf("--webhook-port=%d", ports[2]),
		"--webhook-cert-dir=" + certDir,
		"--sbom-dir=" + filepath.Join(t.TempDir(), "sboms"),
		"--db-dir=" + filepath.Join(t.TempDir(), "db"),
		"--db-listing-url=http://127.0.0.1:1/latest.json",
	}, extraArgs...)
	process := startManagerProcess(t, env.KubeconfigPath, args)
	process.certDir, process.caPEM = certDir, caPEM
	return process
}

// startManagerProcess runs vigil-manager with args and kubeconfig; the probe, metrics and webhook
// addresses are read from args.
func startManagerProcess(t *testing.T, kubeconfig string, args []string) *managerProcess {
	t.Helper()
	g := NewWithT(t)
	binary, err := testenv.BuildBinary("./cmd/manager")
	g.Expect(err).NotTo(HaveOccurred())
	process := &managerProcess{exited: make(chan struct{})}
	for _, arg := range args {
		if value, ok := strings.CutPrefix(arg, "--metrics-bind-address="); ok {
			process.metricsURL = "https://" + value + "/metrics"
		}
		if value, ok := strings.CutPrefix(arg, "--health-probe-bind-address="); ok {
			process.probesURL = "http://" + value
		}
		if value, ok := strings.CutPrefix(arg, "--webhook-port="); ok {
			process.webhookPort, _ = strconv.Atoi(value)
		}
	}
	cmd := exec.Command(binary, args...)
	// A TMPDIR of its own for the in-process scans: no story's scratch files mix with another's.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAMESPACE=vigil-system", "TMPDIR="+t.TempDir())
	stderr, err := cmd.StderrPipe()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cmd.Start()).To(Succeed())
	process.cmd = cmd
	go func() {
		scanner := bufio.NewScanner(stderr)
		scanner.Buffer(make([]byte, 1<<20), 1<<20)
		for scanner.Scan() {
			process.mu.Lock()
			process.stderrLines = append(process.stderrLines, scanner.Text())
			process.mu.Unlock()
		}
		_ = cmd.Wait()
		close(process.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-process.exited
		if t.Failed() {
			t.Logf("vigil-manager logs:\n%s", process.logs())
		}
	})
	return process
}

// waitReady waits until the manager's readiness probe answers 200.
func (p *managerProcess) waitReady(t *testing.T) {
	t.Helper()
	NewWithT(t).Eventually(func() (int, error) {
		code, _, err := httpStatus(p.probesURL+"/readyz", "")
		return code, err
	}, 60*time.Second, 250*time.Millisecond).Should(Equal(http.StatusOK), func() string { return p.logs() })
}

func (p *managerProcess) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var buf bytes.Buffer
	for _, line := range p.stderrLines {
		buf.WriteString(line + "\n")
	}
	return buf.String()
}

func (p *managerProcess) logLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.stderrLines...)
}

// httpStatus is the status code of a GET of url with an optional bearer token.
func httpStatus(url, token string) (int, string, error) {
	request, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		request.Header.Set("Authorization", "Bearer "+token)
	}
	httpClient := &http.Client{
		Timeout: 5 * time.Second,
		// The metrics server's certificate is self-signed; what is under test is who may read.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec
	}
	response, err := httpClient.Do(request)
	if err != nil {
		return 0, "", err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(response.Body)
	return response.StatusCode, string(body), err
}

// serviceAccountToken creates a service account in namespace and returns a token for it.
func serviceAccountToken(t *testing.T, namespace, name string) string {
	t.Helper()
	g := NewWithT(t)
	ctx := t.Context()
	account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	g.Expect(env.Client.Create(ctx, account)).To(Succeed())
	clientset, err := kubernetes.NewForConfig(env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	token, err := clientset.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	return token.Status.Token
}

func TestManagerServesProbesAndProtectedMetricsAndStopsOnSIGTERM(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	manager := startManager(t, "--leader-elect", "--leader-election-namespace=default")

	// The manager becomes ready once its webhook server serves.
	manager.waitReady(t)
	code, _, err := httpStatus(manager.probesURL+"/healthz", "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(http.StatusOK))

	// It holds the leader-election Lease.
	lease := &coordinationv1.Lease{}
	g.Eventually(func() (string, error) {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: app.LeaderElectionID}, lease)
		if lease.Spec.HolderIdentity == nil {
			return "", err
		}
		return *lease.Spec.HolderIdentity, err
	}, 30*time.Second, 250*time.Millisecond).ShouldNot(BeEmpty())

	// Metrics are served only to clients that Kubernetes authenticates and authorizes. (The
	// metrics server starts beside the webhook server; readiness does not wait for it.)
	g.Eventually(func() (int, error) {
		code, _, err := httpStatus(manager.metricsURL, "")
		return code, err
	}, 30*time.Second, 100*time.Millisecond).Should(Equal(http.StatusUnauthorized))

	code, _, err = httpStatus(manager.metricsURL, serviceAccountToken(t, "default", "not-a-scraper"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(http.StatusForbidden))

	scraperToken := serviceAccountToken(t, "default", "metrics-scraper")
	reader := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "vigil-metrics-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	g.Expect(env.Client.Create(ctx, reader)).To(Succeed())
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "vigil-metrics-scraper"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "default", Name: "metrics-scraper"}},
	}
	g.Expect(env.Client.Create(ctx, binding)).To(Succeed())
	// Ask only once the API server's own authorizer has the binding: the manager's filter caches
	// a denial for 30 seconds.
	g.Eventually(func() (bool, error) {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:                  "system:serviceaccount:default:metrics-scraper",
			NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"},
		}}
		err := env.Client.Create(ctx, review)
		return review.Status.Allowed, err
	}, 30*time.Second, 100*time.Millisecond).Should(BeTrue())
	g.Eventually(func() (string, error) {
		code, body, err := httpStatus(manager.metricsURL, scraperToken)
		return fmt.Sprintf("%d %s", code, body), err
	}, 45*time.Second, time.Second).Should(And(HavePrefix("200 "), ContainSubstring("controller_runtime_")))

	// Every log line is a JSON object with a level and a message.
	lines := manager.logLines()
	g.Expect(lines).NotTo(BeEmpty())
	for _, line := range lines {
		var entry map[string]any
		g.Expect(json.Unmarshal([]byte(line), &entry)).To(Succeed(), "log line %q", line)
		g.Expect(entry).To(HaveKey("level"))
		g.Expect(entry).To(HaveKey("msg"))
	}

	// SIGTERM stops it cleanly, and it gives the Lease up.
	g.Expect(manager.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	g.Eventually(manager.exited, 40*time.Second).Should(BeClosed())
	g.Expect(manager.cmd.ProcessState.ExitCode()).To(Equal(0), manager.logs())
	g.Expect(manager.logs()).To(ContainSubstring(`"msg":"Manager stopped"`))
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: app.LeaderElectionID}, lease)).To(Succeed())
	g.Expect(lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity == "").To(BeTrue(), "the Lease is still held")
}

func TestManagerRefusesToStartWithoutItsWebhookCertificate(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	emptyCertDir := filepath.Join(t.TempDir(), "missing")
	manager := startManager(t, "--webhook-cert-dir="+emptyCertDir)
	g.Eventually(manager.exited, 60*time.Second).Should(BeClosed())
	g.Expect(manager.cmd.ProcessState.ExitCode()).To(Equal(1))
	g.Expect(manager.logs()).To(ContainSubstring("Manager stopped with an error"))
}
