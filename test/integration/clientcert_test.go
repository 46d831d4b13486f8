package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/test/testenv"
	"github.com/vigil-dev/vigil/webhook"
)

// As a cluster administrator who gives kube-apiserver an admission client certificate
// (--admission-control-config-file, as docs/security.md shows) and the chart its CA, I see the
// API server's admission requests served by the webhook, and a call made without the
// certificate refused. A control plane of its own is started with that configuration; the
// webhook is installed twice, under two host names of the same manager: one that the webhook
// kubeconfig gives the client certificate, one that it does not.
func TestTheAPIServerCallsTheWebhookWithItsClientCertificate(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	dir := t.TempDir()
	ports, err := testenv.FreePorts(3)
	g.Expect(err).NotTo(HaveOccurred())
	webhookPort := ports[2]

	// The admission client CA and the API server's certificate from it.
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	g.Expect(err).NotTo(HaveOccurred())
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "admission-client-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	g.Expect(err).NotTo(HaveOccurred())
	caCert, err := x509.ParseCertificate(caDER)
	g.Expect(err).NotTo(HaveOccurred())
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	g.Expect(err).NotTo(HaveOccurred())
	clientDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver-admission"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, &clientKey.PublicKey, caKey)
	g.Expect(err).NotTo(HaveOccurred())
	clientKeyDER, err := x509.MarshalECPrivateKey(clientKey)
	g.Expect(err).NotTo(HaveOccurred())
	files := map[string][]byte{
		"admission-client-ca.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		"vigil-client.crt":        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientDER}),
		"vigil-client.key":        pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: clientKeyDER}),
		// docs/security.md's two files; a webhook called by URL is named by its host:port.
		"admission.yaml": []byte(`apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ValidatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: ` + filepath.Join(dir, "webhook-kubeconfig.yaml") + "\n"),
		"webhook-kubeconfig.yaml": []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
users:
- name: 127.0.0.1:%d
  user:
    client-certificate: %s
    client-key: %s
`, webhookPort, filepath.Join(dir, "vigil-client.crt"), filepath.Join(dir, "vigil-client.key"))),
	}
	for name, data := range files {
		g.Expect(os.WriteFile(filepath.Join(dir, name), data, 0o600)).To(Succeed())
	}

	// A control plane whose kube-apiserver reads that admission configuration.
	assets, err := testenv.AssetsDir()
	g.Expect(err).NotTo(HaveOccurred())
	root, err := testenv.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	plane := &envtest.Environment{
		BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{filepath.Join(root, "charts", "vigil", "crds")},
		ErrorIfCRDPathMissing: true, ControlPlaneStartTimeout: 60 * time.Second, ControlPlaneStopTimeout: 30 * time.Second,
	}
	plane.ControlPlane.GetAPIServer().Configure().Append("admission-control-config-file", filepath.Join(dir, "admission.yaml"))
	config, err := plane.Start()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = plane.Stop() })
	admin, err := plane.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, config)
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfig, err := admin.KubeConfig()
	g.Expect(err).NotTo(HaveOccurred())
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	g.Expect(os.WriteFile(kubeconfigPath, kubeconfig, 0o600)).To(Succeed())
	c, err := client.New(config, client.Options{Scheme: env.Client.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vigil-system"}})).To(Succeed())

	// The manager, requiring the admission client CA, serving on both names.
	certDir := t.TempDir()
	servingCA, err := testenv.WriteServingCertificate(certDir, "127.0.0.1", "localhost")
	g.Expect(err).NotTo(HaveOccurred())
	manager := startManagerProcess(t, kubeconfigPath, []string{
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]), "--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		"--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", webhookPort), "--webhook-cert-dir=" + certDir,
		"--webhook-client-ca-file=" + filepath.Join(dir, "admission-client-ca.crt"),
		"--sbom-dir=" + filepath.Join(dir, "sboms"), "--db-dir=" + filepath.Join(dir, "db"),
		"--db-listing-url=http://127.0.0.1:1/latest.json",
	})
	manager.waitReady(t)

	// The webhook under the name the kubeconfig gives the certificate, then under one it does not.
	manifest, err := os.ReadFile(filepath.Join(root, "charts", "vigil", "files", "webhook", "manifests.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	webhookConfig := func(host string) {
		generated := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		g.Expect(yaml.UnmarshalStrict(bytes.TrimPrefix(manifest, []byte("---\n")), generated)).To(Succeed())
		generated.Name = "images-" + host
		url := fmt.Sprintf("https://%s:%d%s", host, webhookPort, webhook.Path)
		for i := range generated.Webhooks {
			generated.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: servingCA}
		}
		g.Expect(c.Create(ctx, generated)).To(Succeed())
		t.Cleanup(func() { _ = c.Delete(context.Background(), generated) })
	}
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[0])
	requests := func(outcome string) float64 {
		response, err := http.Get(metricsURL)
		if err != nil {
			return -1
		}
		defer response.Body.Close()
		text, _ := io.ReadAll(response.Body)
		series := `vigil_webhook_requests_total{outcome="` + outcome + `"} `
		for _, line := range strings.Split(string(text), "\n") {
			if value, ok := strings.CutPrefix(line, series); ok {
				n, _ := strconv.ParseFloat(value, 64)
				return n
			}
		}
		return 0
	}
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/shop/" + name + ":1"}}},
		}
	}

	webhookConfig("127.0.0.1")
	g.Eventually(func() float64 {
		_ = c.Create(ctx, pod(fmt.Sprintf("certified-%d", time.Now().UnixNano())))
		return requests("recorded")
	}, 30*time.Second, 500*time.Millisecond).Should(BeNumerically(">=", 1), func() string { return manager.logs() })
	g.Expect(requests("unauthenticated")).To(BeZero(), "the API server's certified calls were refused")

	webhookConfig("localhost")
	g.Eventually(func() float64 {
		_ = c.Create(ctx, pod(fmt.Sprintf("anonymous-%d", time.Now().UnixNano())))
		return requests("unauthenticated")
	}, 30*time.Second, 500*time.Millisecond).Should(BeNumerically(">=", 1), "a call without the certificate is refused")
}
