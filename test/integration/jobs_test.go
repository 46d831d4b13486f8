package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/test/testenv"
)

// ensure creates object unless it exists.
func ensure(t *testing.T, object client.Object) {
	t.Helper()
	if err := env.Client.Create(t.Context(), object); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func TestScansRunAsKubernetesJobsThatReportBack(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	ensure(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vigil-system"}})
	ensure(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: "vigil-scanner"}})
	ensure(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: "intruder"}})

	manager := startScanningManager(t, w, "--scan-executor=job", "--scanner-image=registry.example/vigil:test",
		"--scanner-limits-memory=768Mi", "--scanner-node-selector=kubernetes.io/os=linux")
	scanner, err := testenv.BuildBinary("./cmd/vigil-scanner")
	g.Expect(err).NotTo(HaveOccurred())
	runner := &testenv.JobRunner{
		Env: env, Namespace: "vigil-system", Binary: scanner,
		Secrets: map[string]map[string][]byte{"vigil-webhook-tls": {"ca.crt": manager.caPEM}},
		Rewrite: map[string]string{"vigil-webhook.vigil-system.svc:443": fmt.Sprintf("127.0.0.1:%d", manager.webhookPort)},
	}
	runnerCtx, stopRunner := context.WithCancel(ctx)
	defer stopRunner()
	go runner.Run(runnerCtx)

	shop := newNamespace(t, nil)
	_, digest, _ := w.runDeployment(t, shop, "jobbed", "shop/api", 1)

	// The scan runs as a Job that meets the restricted Pod Security Standard.
	job := &batchv1.Job{}
	g.Eventually(func() error {
		scan, err := scanOf(ctx, digest)
		if err != nil {
			return err
		}
		return env.Client.Get(ctx, client.ObjectKey{Namespace: "vigil-system", Name: executor.JobName(digest, scan.UID, 1)}, job)
	}, 30*time.Second, 200*time.Millisecond).Should(Succeed(), func() string { return manager.logs() })
	pod := job.Spec.Template.Spec
	g.Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
	g.Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
	g.Expect(*pod.AutomountServiceAccountToken).To(BeFalse())
	g.Expect(pod.NodeSelector).To(Equal(map[string]string{"kubernetes.io/os": "linux"}))
	container := pod.Containers[0].SecurityContext
	g.Expect(*container.AllowPrivilegeEscalation).To(BeFalse())
	g.Expect(*container.ReadOnlyRootFilesystem).To(BeTrue())
	g.Expect(container.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
	g.Expect(pod.Containers[0].Resources.Limits.Memory().String()).To(Equal("768Mi"))
	// Its pull credentials travel in a Secret that the Job owns.
	secret := &corev1.Secret{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: "vigil-system", Name: job.Name}, secret)).To(Succeed())
	g.Expect(secret.OwnerReferences).To(ConsistOf(HaveField("UID", job.UID)))

	// The Job's command runs, reports the SBOM, and the manager matches it.
	g.Eventually(phaseOf(ctx, digest), 90*time.Second, 250*time.Millisecond).Should(Equal(vigilv1alpha1.ImageScanScanned),
		func() string { return fmt.Sprintf("%s\njobs: %v", manager.logs(), runner.Logs) })
	g.Eventually(func() ([]string, error) {
		vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44228")
		return workloadNames(vulnerability), err
	}, 30*time.Second, 250*time.Millisecond).Should(ContainElement(shop + "/Deployment/jobbed/c0"))

	// Reports without a scan Job's token are refused.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(manager.caPEM)
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	reportURL := fmt.Sprintf("https://127.0.0.1:%d%s?kind=sbom", manager.webhookPort, executor.ReportPath)
	post := func(token string) int {
		request, err := http.NewRequest(http.MethodPost, reportURL, bytes.NewReader([]byte(`{}`)))
		g.Expect(err).NotTo(HaveOccurred())
		if token != "" {
			request.Header.Set("Authorization", "Bearer "+token)
		}
		response, err := httpClient.Do(request)
		g.Expect(err).NotTo(HaveOccurred())
		_ = response.Body.Close()
		return response.StatusCode
	}
	g.Expect(post("")).To(Equal(http.StatusUnauthorized))
	clientset, err := kubernetes.NewForConfig(env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	intruder, err := clientset.CoreV1().ServiceAccounts("vigil-system").CreateToken(ctx, "intruder",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{executor.ReportAudience}}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(post(intruder.Status.Token)).To(Equal(http.StatusForbidden))
	unbound, err := clientset.CoreV1().ServiceAccounts("vigil-system").CreateToken(ctx, "vigil-scanner",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{executor.ReportAudience}}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(post(unbound.Status.Token)).To(Equal(http.StatusForbidden), "a scanner token not bound to the Job's pod")
}
