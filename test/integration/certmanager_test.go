package integration

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"os/exec"
	"sync"
	"testing"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/test/testenv"
)

// TestCertManagerIssuesTheWebhookCertificateChain creates the chart's own cert-manager resources,
// as helm renders them (a self-signed Issuer, a CA Certificate, a CA Issuer and the webhook
// Service's serving Certificate), and runs cert-manager's real issuance controllers against
// them: the serving certificate's Secret, which the manager mounts, holds a certificate for the
// webhook Service's names that the CA's Secret verifies.
func TestCertManagerIssuesTheWebhookCertificateChain(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	crds, err := testenv.CertManagerCRDDir()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(testenv.InstallCRDs(env, crds)).To(Succeed())

	scheme := runtime.NewScheme()
	g.Expect(certmanagerv1.AddToScheme(scheme)).To(Succeed())
	g.Expect(corev1.AddToScheme(scheme)).To(Succeed())
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	namespace := newNamespace(t, nil)

	// The chart's Issuers and Certificates, rendered for the story's namespace.
	var created []string
	for _, kind := range []string{"Issuer", "Certificate"} {
		for _, document := range renderChartIn(t, namespace, kind, nil, "vulnerabilityScanning.enabled=true") {
			var object client.Object = &certmanagerv1.Issuer{}
			if kind == "Certificate" {
				object = &certmanagerv1.Certificate{}
			}
			g.Expect(yaml.UnmarshalStrict([]byte(document), object)).To(Succeed(), document)
			g.Expect(object.GetNamespace()).To(Equal(namespace))
			g.Expect(c.Create(ctx, object)).To(Succeed(), "creating %s %s", kind, object.GetName())
			t.Cleanup(func() { _ = c.Delete(context.Background(), object) })
			created = append(created, kind+"/"+object.GetName())
		}
	}
	g.Expect(created).To(ConsistOf("Issuer/story-vigil-selfsigned", "Issuer/story-vigil-ca",
		"Certificate/story-vigil-ca", "Certificate/story-vigil-webhook"))

	// cert-manager's issuance controllers, from the cert-manager module, as on a cluster.
	certManager, err := testenv.BuildBinary("./hack/cert-manager")
	g.Expect(err).NotTo(HaveOccurred())
	cmdCtx, stop := context.WithCancel(context.Background())
	cmd := exec.CommandContext(cmdCtx, certManager, "--kubeconfig", env.KubeconfigPath)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	g.Expect(cmd.Start()).To(Succeed())
	t.Cleanup(func() {
		stop()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("cert-manager logs:\n%s", logs.String())
		}
	})

	secret := &corev1.Secret{}
	g.Eventually(func() error {
		return c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "story-vigil-webhook-tls"}, secret)
	}, 2*time.Minute, 250*time.Millisecond).Should(Succeed(), func() string { return logs.String() })
	g.Expect(secret.Annotations).To(HaveKeyWithValue("cert-manager.io/issuer-name", "story-vigil-ca"))
	caSecret := &corev1.Secret{}
	g.Expect(c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "story-vigil-ca"}, caSecret)).To(Succeed())

	// The serving certificate verifies against the chart's CA for the webhook Service's name.
	roots := x509.NewCertPool()
	g.Expect(roots.AppendCertsFromPEM(caSecret.Data["tls.crt"])).To(BeTrue(), "the CA Secret holds a certificate")
	g.Expect(secret.Data["ca.crt"]).To(Equal(caSecret.Data["tls.crt"]), "the serving Secret carries the CA that cainjector injects")
	block, _ := pem.Decode(secret.Data["tls.crt"])
	g.Expect(block).NotTo(BeNil(), "the serving Secret holds a certificate")
	serving, err := x509.ParseCertificate(block.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = serving.Verify(x509.VerifyOptions{
		Roots: roots, DNSName: "story-vigil-webhook." + namespace + ".svc", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(serving.IsCA).To(BeFalse())
	g.Expect(serving.PublicKeyAlgorithm).To(Equal(x509.ECDSA))
	g.Expect(serving.DNSNames).To(ConsistOf("story-vigil-webhook."+namespace+".svc", "story-vigil-webhook."+namespace+".svc.cluster.local"))
}

// lockedBuffer is a buffer that a process writes and a test reads at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
