package integration

import (
	"testing"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/vigil-dev/vigil/test/testenv"
)

// TestCertManagerIssuesTheWebhookCertificateChain installs cert-manager's CRDs from the
// cert-manager module and creates the chain that gives Vigil's webhook its TLS: a self-signed
// Issuer, a CA Certificate, a CA Issuer and the webhook Service's serving Certificate, whose
// Secret the manager mounts.
func TestCertManagerIssuesTheWebhookCertificateChain(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	crds, err := testenv.CertManagerCRDDir()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(testenv.InstallCRDs(env, crds)).To(Succeed())

	scheme := runtime.NewScheme()
	g.Expect(certmanagerv1.AddToScheme(scheme)).To(Succeed())
	c, err := client.New(env.Config, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	namespace := newNamespace(t, nil)

	selfSigned := &certmanagerv1.Issuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "vigil-selfsigned"},
		Spec:       certmanagerv1.IssuerSpec{IssuerConfig: certmanagerv1.IssuerConfig{SelfSigned: &certmanagerv1.SelfSignedIssuer{}}},
	}
	ca := &certmanagerv1.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "vigil-ca"},
		Spec: certmanagerv1.CertificateSpec{
			IsCA: true, CommonName: "vigil-ca", SecretName: "vigil-ca",
			PrivateKey: &certmanagerv1.CertificatePrivateKey{Algorithm: certmanagerv1.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Kind: "Issuer", Name: selfSigned.Name},
		},
	}
	caIssuer := &certmanagerv1.Issuer{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "vigil-ca"},
		Spec:       certmanagerv1.IssuerSpec{IssuerConfig: certmanagerv1.IssuerConfig{CA: &certmanagerv1.CAIssuer{SecretName: "vigil-ca"}}},
	}
	serving := &certmanagerv1.Certificate{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "vigil-webhook"},
		Spec: certmanagerv1.CertificateSpec{
			SecretName: "vigil-webhook-tls",
			DNSNames:   []string{"vigil-webhook." + namespace + ".svc", "vigil-webhook." + namespace + ".svc.cluster.local"},
			Usages:     []certmanagerv1.KeyUsage{certmanagerv1.UsageServerAuth},
			IssuerRef:  cmmeta.IssuerReference{Kind: "Issuer", Name: caIssuer.Name},
		},
	}
	for _, object := range []client.Object{selfSigned, ca, caIssuer, serving} {
		g.Expect(c.Create(ctx, object)).To(Succeed(), "creating %s %s", object.GetObjectKind().GroupVersionKind().Kind, object.GetName())
	}

	read := &certmanagerv1.Certificate{}
	g.Expect(c.Get(ctx, client.ObjectKeyFromObject(serving), read)).To(Succeed())
	g.Expect(read.Spec.DNSNames).To(ContainElement("vigil-webhook." + namespace + ".svc"))
}
