// Package chart tests Vigil's Helm chart with the helm binary that hack/build-helm.sh builds:
// lint, rendering against golden files (UPDATE_GOLDEN=1 rewrites them), the schema's rejections,
// and that the rendered manager arguments are ones the manager accepts.
package chart

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/test/testenv"
)

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	binary := filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(binary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("bin/helm is missing (make tools builds it): %v", err)
		}
		t.Skip("bin/helm is not built; run 'make tools'")
	}
	cmd := exec.Command(binary, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// variants are the value sets rendered against golden files.
var variants = []struct {
	name string
	set  []string
}{
	{"default", nil},
	{"openshift", []string{"openshift.enabled=true"}},
	{"air-gapped", []string{"database.airGapped.enabled=true", "database.airGapped.existingClaim=vigil-db-archive", "persistence.enabled=true"}},
	{"existing-issuer", []string{"webhook.certManager.issuerRef.name=company-ca", "webhook.certManager.issuerRef.kind=ClusterIssuer"}},
	{"without-cert-manager", []string{"webhook.certManager.enabled=false", "webhook.existingSecret=vigil-tls", "webhook.caBundle=Q0EK"}},
	{"in-process", []string{"vulnerabilityScanning.executor=in-process", "replicas=1", "excludedNamespaces={kube-system,monitoring}"}},
	{"dashboard", []string{"dashboard.enabled=true"}},
}

func render(t *testing.T, set []string) (string, error) {
	args := []string{"template", "vigil", "charts/vigil", "--namespace", "vigil-system"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return helm(t, args...)
}

func TestLint(t *testing.T) {
	for _, v := range variants {
		args := []string{"lint", "charts/vigil", "--strict"}
		for _, s := range v.set {
			args = append(args, "--set", s)
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("helm lint (%s): %v\n%s", v.name, err, out)
		}
	}
}

func TestRenderingMatchesGoldenFiles(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			out, err := render(t, v.set)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", v.name+".yaml")
			if os.Getenv("UPDATE_GOLDEN") != "" {
				if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading %s (UPDATE_GOLDEN=1 writes it): %v", path, err)
			}
			if out != string(want) {
				t.Errorf("the rendering of %s differs from %s; run UPDATE_GOLDEN=1 go test ./test/chart/ and review the difference", v.name, path)
			}
		})
	}
}

func TestSchemaRejectsWrongValues(t *testing.T) {
	tests := []struct {
		set     string
		message string
	}{
		{"vulnerabilityScanning.executor=pod", "/vulnerabilityScanning/executor': value must be one of 'job', 'in-process'"},
		{"webhook.failurePolicy=Never", "/webhook/failurePolicy'"},
		{"webhook.timeoutSeconds=60", "/webhook/timeoutSeconds': maximum: got 60, want 30"},
		{"resources.scanner.limits.memory=lots", "/resources/scanner/limits/memory': 'lots' does not match pattern"},
		{"database.listingURL=ftp://db.example/latest.json", "/database/listingURL'"},
		{"replicas=0", "replicas"},
		{"vulnerabilityScanning.concurrency=0", "/vulnerabilityScanning/concurrency': minimum: got 0, want 1"},
		{"excludedNamespaces={Not_A_Namespace}", "excludedNamespaces"},
		{"unknownValue=1", "unknownValue"},
	}
	for _, tc := range tests {
		t.Run(tc.set, func(t *testing.T) {
			_, err := render(t, []string{tc.set})
			if err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("helm template --set %s: %v; want a schema error naming %s", tc.set, err, tc.message)
			}
		})
	}
	// Values the templates require.
	if _, err := render(t, []string{"database.airGapped.enabled=true"}); err == nil || !strings.Contains(err.Error(), "database.airGapped.existingClaim is required") {
		t.Errorf("air-gapped without a claim: %v", err)
	}
	if _, err := render(t, []string{"webhook.certManager.enabled=false"}); err == nil || !strings.Contains(err.Error(), "webhook.caBundle is required") {
		t.Errorf("without cert-manager and a CA bundle: %v", err)
	}
}

func TestTheManagerAcceptsTheRenderedArguments(t *testing.T) {
	binary, err := testenv.BuildBinary("./cmd/manager")
	if err != nil {
		t.Fatal(err)
	}
	defer testenv.RemoveBinaries()
	for _, v := range variants {
		out, err := render(t, v.set)
		if err != nil {
			t.Fatal(err)
		}
		for _, document := range strings.Split(out, "\n---\n") {
			if !strings.Contains(document, "kind: Deployment") {
				continue
			}
			deployment := &appsv1.Deployment{}
			if err := yaml.Unmarshal([]byte(document), deployment); err != nil {
				t.Fatal(err)
			}
			container := deployment.Spec.Template.Spec.Containers[0]
			// Flags that parse bring the manager to loading its configuration, which fails here
			// with exit code 1; bad flags exit with 2.
			cmd := exec.Command(binary, container.Args...)
			cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(t.TempDir(), "missing"), "KUBERNETES_SERVICE_HOST=")
			output, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("%s: vigil-manager %v: %v\n%s", v.name, container.Args, err, output)
			}
			if sc := container.SecurityContext; sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: the manager's container is not restricted: %+v", v.name, sc)
			}
			pod := deployment.Spec.Template.Spec.SecurityContext
			if v.name == "openshift" && (pod.RunAsUser != nil || pod.FSGroup != nil) {
				t.Errorf("openshift: fixed user or group IDs: %+v", pod)
			}
		}
	}
}
