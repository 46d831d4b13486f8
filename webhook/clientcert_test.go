package webhook

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	webhookconfig "k8s.io/apiserver/pkg/admission/plugin/webhook/config"
	"k8s.io/apiserver/pkg/apis/apiserver/install"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
)

// TestTheDocumentedAPIServerConfigurationSendsTheClientCertificate reads the kube-apiserver
// configuration that docs/security.md gives for the webhook's client certificate, and resolves
// it with the API server's own code, as kube-apiserver does for a webhook call: the admission
// configuration decodes strictly, names a webhook kubeconfig for ValidatingAdmissionWebhook, and
// that kubeconfig gives the chart's webhook Service (vigil-webhook in vigil-system, port 443) the
// documented client certificate and key. A misnamed user entry would make kube-apiserver call the
// webhook without a certificate.
func TestTheDocumentedAPIServerConfigurationSendsTheClientCertificate(t *testing.T) {
	text, err := os.ReadFile(filepath.Join("..", "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{}
	for _, marker := range []string{"admission-configuration", "webhook-kubeconfig"} {
		block := yamlBlockAfter(t, string(text), "<!-- "+marker+":")
		// The documented absolute paths are moved under dir.
		firstLine, _, _ := strings.Cut(block, "\n")
		path := strings.TrimSpace(strings.TrimPrefix(firstLine, "#"))
		files[marker] = filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(files[marker]), 0o700); err != nil {
			t.Fatal(err)
		}
		block = strings.ReplaceAll(block, " /etc/kubernetes/", " "+filepath.Join(dir, "etc", "kubernetes")+"/")
		if err := os.WriteFile(files[marker], []byte(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	scheme := runtime.NewScheme()
	install.Install(scheme)
	provider, err := admission.ReadAdmissionConfiguration([]string{"ValidatingAdmissionWebhook"}, files["admission-configuration"], scheme)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := provider.ConfigFor("ValidatingAdmissionWebhook")
	if err != nil {
		t.Fatal(err)
	}
	plugin, err := webhookconfig.LoadConfig(reader)
	if err != nil {
		t.Fatal(err)
	}
	if plugin.KubeConfigFile != files["webhook-kubeconfig"] {
		t.Fatalf("the admission configuration names kubeconfig %q; the documented kubeconfig is %q", plugin.KubeConfigFile, files["webhook-kubeconfig"])
	}
	resolver, err := webhookutil.NewDefaultAuthenticationInfoResolver(plugin.KubeConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	config, err := resolver.ClientConfigForService("vigil-webhook", "vigil-system", 443)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "etc", "kubernetes", "admission")
	if config.CertFile != filepath.Join(want, "vigil-client.crt") || config.KeyFile != filepath.Join(want, "vigil-client.key") {
		t.Fatalf("the API server would call Vigil's webhook with certificate %q and key %q", config.CertFile, config.KeyFile)
	}
	// Another Service gets no certificate from this kubeconfig.
	other, err := resolver.ClientConfigForService("other-webhook", "vigil-system", 443)
	if err != nil {
		t.Fatal(err)
	}
	if other.CertFile != "" {
		t.Errorf("another webhook gets certificate %q", other.CertFile)
	}
}

// yamlBlockAfter returns the fenced yaml block that follows marker in text.
func yamlBlockAfter(t *testing.T, text, marker string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, marker)
	if !ok {
		t.Fatalf("docs/security.md has no %q", marker)
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatalf("no yaml block after %q", marker)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("the yaml block after %q does not end", marker)
	}
	return block
}
