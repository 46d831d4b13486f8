// Package chart tests Vigil's Helm chart with the helm binary that hack/build-helm.sh builds:
// lint, rendering against golden files (UPDATE_GOLDEN=1 rewrites them and compares nothing), the schema's rejections,
// and that the rendered manager arguments are ones the manager accepts.
package chart

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/test/golden"
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

// variants are the value sets rendered against golden files: --set values, or a values file of
// testdata/values when set starts with "@".
var variants = []struct {
	name string
	set  []string
}{
	{"default", nil},
	{"openshift", []string{"openshift.enabled=true"}},
	{"air-gapped", []string{"database.airGapped.enabled=true", "database.airGapped.existingClaim=vigil-db-archive", "persistence.enabled=true"}},
	{"existing-issuer", []string{"webhook.certManager.issuerRef.name=company-ca", "webhook.certManager.issuerRef.kind=ClusterIssuer",
		"webhook.clientCA.configMapName=apiserver-admission-ca"}},
	{"without-cert-manager", []string{"webhook.certManager.enabled=false", "webhook.existingSecret=vigil-tls", "webhook.caBundle=Q0EK"}},
	{"in-process", []string{"vulnerabilityScanning.executor=in-process", "replicas=1", "excludedNamespaces={kube-system,monitoring}",
		"podSecurity.warn=", "podSecurity.audit=baseline"}},
	{"platform-conventions", []string{"@platform.yaml"}},
	{"metrics", []string{"@metrics.yaml"}},
	{"scan-jobs", []string{"@scan-jobs.yaml"}},
	{"dashboard", []string{"dashboard.enabled=true"}},
	{"persistence-on", []string{"persistence.enabled=true"}},
	{"persistence-off", []string{"persistence.enabled=false"}},
	{"persistence-storage-class", []string{"persistence.storageClass=fast-ssd", "persistence.size=20Gi"}},
}

// valueArgs are helm's arguments for a variant's values.
func valueArgs(set []string) []string {
	var args []string
	for _, s := range set {
		if file, ok := strings.CutPrefix(s, "@"); ok {
			args = append(args, "--values", filepath.Join("test", "chart", "testdata", "values", file))
		} else {
			args = append(args, "--set", s)
		}
	}
	return args
}

func render(t *testing.T, set []string) (string, error) {
	args := []string{"template", "vigil", "charts/vigil", "--namespace", "vigil-system"}
	return helm(t, append(args, valueArgs(set)...)...)
}

func TestLint(t *testing.T) {
	for _, v := range variants {
		args := append([]string{"lint", "charts/vigil", "--strict"}, valueArgs(v.set)...)
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
			golden.Assert(t, path, out, func(string) string {
				return fmt.Sprintf("the rendering of %s differs from %s; run UPDATE_GOLDEN=1 go test ./test/chart/, review the difference, and run the test again", v.name, path)
			})
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
		{"persistence.enabled=maybe", "/persistence/enabled'"},
		{"image.digest=latest", "/image/digest': 'latest' does not match pattern"},
		{"proxy.httpsProxy=proxy:3128", "/proxy/httpsProxy'"},
		{"metrics.workloadSeriesLimit=-1", "/metrics/workloadSeriesLimit': minimum"},
		{"metrics.serviceMonitor.interval=often", "/metrics/serviceMonitor/interval'"},
		{"nameOverride=Not_A_Name", "/nameOverride'"},
		{"resources.scanner.limits.ephemeral-storage=huge", "ephemeral-storage': 'huge' does not match pattern"},
		{"podSecurity.enforce=strict", "/podSecurity/enforce': value must be one of"},
		{"webhook.clientCA.caBundle=not-a-certificate", "/webhook/clientCA/caBundle': 'not-a-certificate' does not match pattern"},
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

func TestSchemaAcceptsWhatSubchartsAndPoliciesNeed(t *testing.T) {
	for _, set := range [][]string{
		{"global.imageRegistry=mirror.example", "global.storageClass=fast"}, // a parent chart's globals
		{"resources.scanner.limits.cpu=null", "resources.manager.limits.memory=null"},
	} {
		if _, err := render(t, set); err != nil {
			t.Errorf("helm template --set %v: %v", set, err)
		}
	}
	if _, err := render(t, []string{"caBundle.configMapName=a", "caBundle.secretName=b"}); err == nil {
		t.Error("a CA bundle from both a ConfigMap and a Secret was accepted")
	}
}

// documents are the rendered objects of kind.
func documents(t *testing.T, out, kind string) []map[string]any {
	t.Helper()
	var found []map[string]any
	for _, document := range strings.Split(out, "\n---\n") {
		object := map[string]any{}
		if err := yaml.Unmarshal([]byte(document), &object); err != nil {
			t.Fatal(err)
		}
		if object["kind"] == kind {
			found = append(found, object)
		}
	}
	return found
}

func TestThePDBRendersOnlyWhenItCannotBlockADrain(t *testing.T) {
	for _, tc := range []struct {
		replicas string
		want     int
	}{{"1", 0}, {"2", 1}, {"3", 1}} {
		out, err := render(t, []string{"replicas=" + tc.replicas})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(documents(t, out, "PodDisruptionBudget")); got != tc.want {
			t.Errorf("replicas=%s: %d PodDisruptionBudgets, want %d", tc.replicas, got, tc.want)
		}
		deployment := &appsv1.Deployment{}
		for _, object := range documents(t, out, "Deployment") {
			data, _ := yaml.Marshal(object)
			if err := yaml.Unmarshal(data, deployment); err != nil {
				t.Fatal(err)
			}
		}
		antiAffinity := deployment.Spec.Template.Spec.Affinity != nil && deployment.Spec.Template.Spec.Affinity.PodAntiAffinity != nil
		if antiAffinity != (tc.replicas != "1") {
			t.Errorf("replicas=%s: default pod anti-affinity %v", tc.replicas, antiAffinity)
		}
	}
}

// TestPersistenceGivesEachReplicaAClaimOfItsOwn: with persistence the manager is a StatefulSet
// whose replicas each claim a volume (only the leader writes SBOMs; a shared claim would need
// ReadWriteMany and would have two writers); without it a Deployment with an emptyDir. The
// default, auto, looks the cluster's default StorageClass up, which `helm template` cannot:
// there it renders what a cluster without storage gets (test/integration plays a cluster with
// a default class).
func TestPersistenceGivesEachReplicaAClaimOfItsOwn(t *testing.T) {
	for _, tc := range []struct {
		name        string
		set         []string
		persistence bool
		class       string
	}{
		{"auto without a cluster", nil, false, ""},
		{"forced off", []string{"persistence.enabled=false", "persistence.storageClass=fast-ssd"}, false, ""},
		{"forced on", []string{"persistence.enabled=true"}, true, ""},
		{"auto with a class named", []string{"persistence.storageClass=fast-ssd"}, true, "fast-ssd"},
		{"forced on, one replica", []string{"persistence.enabled=true", "replicas=1"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := render(t, tc.set)
			if err != nil {
				t.Fatal(err)
			}
			if claims := documents(t, out, "PersistentVolumeClaim"); len(claims) != 0 {
				t.Errorf("a claim shared by the replicas: %v", claims)
			}
			deployments, statefulSets := documents(t, out, "Deployment"), documents(t, out, "StatefulSet")
			if !tc.persistence {
				if len(deployments) != 1 || len(statefulSets) != 0 {
					t.Fatalf("%d Deployments and %d StatefulSets, want the manager's Deployment", len(deployments), len(statefulSets))
				}
				deployment := &appsv1.Deployment{}
				convert(t, deployments[0], deployment)
				if volume := volumeNamed(deployment.Spec.Template.Spec.Volumes, "data"); volume == nil || volume.EmptyDir == nil {
					t.Errorf("the data volume is %+v, want an emptyDir", volume)
				}
				return
			}
			if len(deployments) != 0 || len(statefulSets) != 1 {
				t.Fatalf("%d Deployments and %d StatefulSets, want the manager's StatefulSet", len(deployments), len(statefulSets))
			}
			statefulSet := &appsv1.StatefulSet{}
			convert(t, statefulSets[0], statefulSet)
			spec := statefulSet.Spec
			if volume := volumeNamed(spec.Template.Spec.Volumes, "data"); volume != nil {
				t.Errorf("the pod has a data volume %+v besides its claim", volume)
			}
			if len(spec.VolumeClaimTemplates) != 1 || spec.VolumeClaimTemplates[0].Name != "data" {
				t.Fatalf("claim templates %+v, want one named data", spec.VolumeClaimTemplates)
			}
			claim := spec.VolumeClaimTemplates[0].Spec
			if !slices.Equal(claim.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
				t.Errorf("access modes %v, want ReadWriteOnce: each replica has its own claim", claim.AccessModes)
			}
			if got := ptr.Deref(claim.StorageClassName, ""); got != tc.class {
				t.Errorf("storage class %q, want %q", got, tc.class)
			}
			if spec.ServiceName != "vigil-webhook" || spec.PodManagementPolicy != appsv1.ParallelPodManagement {
				t.Errorf("service %q, pod management %q", spec.ServiceName, spec.PodManagementPolicy)
			}
			if policy := spec.PersistentVolumeClaimRetentionPolicy; policy == nil || policy.WhenDeleted != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
				t.Errorf("claim retention %+v: the claims should go with the release", policy)
			}
			mounted := false
			for _, mount := range spec.Template.Spec.Containers[0].VolumeMounts {
				mounted = mounted || (mount.Name == "data" && mount.MountPath == "/var/lib/vigil")
			}
			if !mounted {
				t.Error("the claim is not mounted at /var/lib/vigil")
			}
		})
	}
}

// convert decodes a rendered document into object.
func convert(t *testing.T, document map[string]any, object any) {
	t.Helper()
	data, err := yaml.Marshal(document)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, object); err != nil {
		t.Fatal(err)
	}
}

func volumeNamed(volumes []corev1.Volume, name string) *corev1.Volume {
	for i := range volumes {
		if volumes[i].Name == name {
			return &volumes[i]
		}
	}
	return nil
}

func TestRemovingTheScannerCPULimitRendersNoEmptyFlag(t *testing.T) {
	out, err := render(t, []string{"resources.scanner.limits.cpu=null"})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasSuffix(strings.TrimSpace(line), "=") {
			t.Errorf("an empty flag: %s", line)
		}
	}
	configMap := documents(t, out, "ConfigMap")[0]
	template := configMap["data"].(map[string]any)["pod-template.yaml"].(string)
	if strings.Contains(template, "cpu: \"1\"") || !strings.Contains(template, "memory: 1Gi") {
		t.Errorf("the scan Jobs' pod template:\n%s", template)
	}
}

func TestTheServiceMonitorUsesTheAuthorizationField(t *testing.T) {
	out, err := render(t, []string{"@metrics.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "bearerTokenFile") {
		t.Error("the ServiceMonitor uses the deprecated bearerTokenFile")
	}
	monitors := documents(t, out, "ServiceMonitor")
	if len(monitors) != 1 {
		t.Fatalf("%d ServiceMonitors", len(monitors))
	}
	endpoint := monitors[0]["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
	credentials := endpoint["authorization"].(map[string]any)["credentials"].(map[string]any)
	secrets := documents(t, out, "Secret")
	if len(secrets) != 1 || secrets[0]["metadata"].(map[string]any)["name"] != credentials["name"] ||
		secrets[0]["metadata"].(map[string]any)["namespace"] != "monitoring" || secrets[0]["type"] != "kubernetes.io/service-account-token" {
		t.Errorf("the ServiceMonitor's credentials %v do not name the token Secret the chart renders in its namespace: %v", credentials, secrets)
	}
	// The reader role grants exactly GET /metrics.
	for _, role := range documents(t, out, "ClusterRole") {
		if role["metadata"].(map[string]any)["name"] == "vigil-metrics-reader" {
			rules, _ := yaml.Marshal(role["rules"])
			if string(rules) != "- nonResourceURLs:\n  - /metrics\n  verbs:\n  - get\n" {
				t.Errorf("the metrics reader's rules:\n%s", rules)
			}
		}
	}
}

func TestTheFindingsAggregateIntoTheDefaultRolesReadOnly(t *testing.T) {
	out, err := render(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range documents(t, out, "ClusterRole") {
		metadata := role["metadata"].(map[string]any)
		if metadata["name"] != "vigil-view" {
			continue
		}
		labels := metadata["labels"].(map[string]any)
		for _, aggregate := range []string{"view", "edit", "admin"} {
			if labels["rbac.authorization.k8s.io/aggregate-to-"+aggregate] != "true" {
				t.Errorf("vigil-view does not aggregate to %s", aggregate)
			}
		}
		rules, _ := yaml.Marshal(role["rules"])
		if string(rules) != "- apiGroups:\n  - vigil.dev\n  resources:\n  - vulnerabilities\n  - imagescans\n  verbs:\n  - get\n  - list\n  - watch\n" {
			t.Errorf("vigil-view's rules:\n%s", rules)
		}
		return
	}
	t.Error("no vigil-view ClusterRole")
}

// metricName matches the metric names in a PromQL expression.
var metricName = regexp.MustCompile(`vigil_[a-z_]+`)

func TestTheDashboardIsShippedAndEveryMetricItUsesIsDocumented(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	chartCopy, err := os.ReadFile(filepath.Join(root, "charts", "vigil", "files", "dashboards", "vigil.json"))
	if err != nil {
		t.Fatal(err)
	}
	docsCopy, err := os.ReadFile(filepath.Join(root, "docs", "grafana", "vigil-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chartCopy, docsCopy) {
		t.Error("the chart's dashboard and docs/grafana/vigil-dashboard.json differ")
	}
	var dashboard struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(chartCopy, &dashboard); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	reference, err := os.ReadFile(filepath.Join(root, "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, panel := range dashboard.Panels {
		if len(panel.Targets) == 0 {
			t.Errorf("panel %q has no query", panel.Title)
		}
		for _, target := range panel.Targets {
			for _, name := range metricName.FindAllString(target.Expr, -1) {
				name = strings.TrimSuffix(name, "_bucket")
				if !strings.Contains(string(reference), "`"+name+"`") {
					t.Errorf("panel %q queries %s, which docs/metrics.md does not document", panel.Title, name)
				}
			}
		}
	}
	out, err := render(t, []string{"@metrics.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	configMaps := documents(t, out, "ConfigMap")
	for _, configMap := range configMaps {
		metadata := configMap["metadata"].(map[string]any)
		if metadata["name"] != "vigil-dashboard" {
			continue
		}
		if metadata["labels"].(map[string]any)["grafana_dashboard"] != "1" || metadata["namespace"] != "monitoring" {
			t.Errorf("the dashboard ConfigMap's metadata: %v", metadata)
		}
		if configMap["data"].(map[string]any)["vigil.json"] != strings.TrimSuffix(string(chartCopy), "\n") {
			t.Error("the dashboard ConfigMap does not hold the dashboard")
		}
		return
	}
	t.Error("metrics.dashboard.enabled rendered no dashboard ConfigMap")
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
			if !strings.Contains(document, "kind: Deployment") && !strings.Contains(document, "kind: StatefulSet") {
				continue
			}
			// The manager runs as a Deployment, or a StatefulSet with persistence: the same pod.
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

func TestNetworkPoliciesAdmitOnlyWhoShouldReachVigil(t *testing.T) {
	out, err := render(t, []string{"networkPolicy.apiServerCIDRs={172.20.0.0/16}", "vulnerabilityScanning.registries.serviceCIDR=10.43.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	policies := map[string]*networkingv1.NetworkPolicy{}
	for _, object := range documents(t, out, "NetworkPolicy") {
		data, _ := yaml.Marshal(object)
		policy := &networkingv1.NetworkPolicy{}
		if err := yaml.Unmarshal(data, policy); err != nil {
			t.Fatal(err)
		}
		policies[policy.Name] = policy
	}
	manager, scanJobs := policies["vigil-manager"], policies["vigil-scan-jobs"]
	if manager == nil || scanJobs == nil {
		t.Fatalf("rendered NetworkPolicies %v", policies)
	}
	webhook := manager.Spec.Ingress[0]
	if webhook.Ports[0].Port.IntValue() != 9443 || len(webhook.From) != 2 || webhook.From[0].IPBlock == nil ||
		webhook.From[0].IPBlock.CIDR != "172.20.0.0/16" || webhook.From[1].PodSelector.MatchLabels["app.kubernetes.io/component"] != "scan-job" {
		t.Errorf("the webhook port admits %+v, want the API server's range and the scan Jobs only", webhook.From)
	}
	if !slices.Contains(scanJobs.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Fatal("scan Jobs' egress is not restricted")
	}
	registries := scanJobs.Spec.Egress[2].To[0].IPBlock
	if registries == nil || registries.CIDR != "0.0.0.0/0" || !slices.Contains(registries.Except, "169.254.0.0/16") || !slices.Contains(registries.Except, "10.43.0.0/16") {
		t.Errorf("scan Jobs reach registries through %+v, want everything but link-local and the Service range", registries)
	}

	out, err = render(t, []string{"networkPolicy.enabled=false"})
	if err != nil {
		t.Fatal(err)
	}
	if got := documents(t, out, "NetworkPolicy"); len(got) != 0 {
		t.Errorf("networkPolicy.enabled=false renders %d NetworkPolicies", len(got))
	}
}
