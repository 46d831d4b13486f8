package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/test/testenv"
)

// helmCommand is bin/helm with args, run from the module's root with helm's homes in temporary
// folders. Without bin/helm the test is skipped, or fails under CI.
func helmCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	helm := filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(helm); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("bin/helm is missing (make tools builds it): %v", err)
		}
		t.Skip("bin/helm is not built; run 'make tools'")
	}
	cmd := exec.Command(helm, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	return cmd
}

// renderChart renders charts/vigil as release "story" in namespace vigil-system with the values
// files and --set values, and returns its documents of kind.
func renderChart(t *testing.T, kind string, valuesFiles []string, set ...string) []string {
	t.Helper()
	return renderChartIn(t, "vigil-system", kind, valuesFiles, set...)
}

// renderChartIn renders charts/vigil as release "story" in namespace with the values files and
// --set values, and returns its documents of kind.
func renderChartIn(t *testing.T, namespace, kind string, valuesFiles []string, set ...string) []string {
	t.Helper()
	args := []string{"template", "story", "charts/vigil", "--namespace", namespace}
	for _, file := range valuesFiles {
		args = append(args, "--values", file)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	cmd := helmCommand(t, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, stderr.String())
	}
	var documents []string
	for _, document := range strings.Split(string(out), "\n---\n") {
		if strings.Contains(document, "\nkind: "+kind+"\n") {
			documents = append(documents, document)
		}
	}
	return documents
}

// TestAPlatformTeamScrapesTheFindingsWithTheChartsReaderRole: the platform team binds the chart's
// metrics reader ClusterRole to its scraper and reads, from the leader, the vulnerabilities that
// run in a namespace, per workload when opted in, and the database's state; when the workload
// stops, its series go.
func TestAPlatformTeamScrapesTheFindingsWithTheChartsReaderRole(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	documents := renderChart(t, "ClusterRole", nil, "metrics.readerClusterRole.enabled=true")
	reader := &rbacv1.ClusterRole{}
	for _, document := range documents {
		if strings.Contains(document, "name: story-vigil-metrics-reader\n") {
			g.Expect(yaml.Unmarshal([]byte(document), reader)).To(Succeed())
		}
	}
	g.Expect(reader.Name).To(Equal("story-vigil-metrics-reader"), "the chart renders the reader ClusterRole")
	g.Expect(env.Client.Create(ctx, reader)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), reader) })
	scraper := serviceAccountToken(t, "default", "story-prometheus")
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "story-prometheus"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "default", Name: "story-prometheus"}},
	}
	g.Expect(env.Client.Create(ctx, binding)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), binding) })
	g.Eventually(func() (bool, error) {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:                  "system:serviceaccount:default:story-prometheus",
			NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"},
		}}
		err := env.Client.Create(ctx, review)
		return review.Status.Allowed, err
	}, 30*time.Second, 100*time.Millisecond).Should(BeTrue())

	w := theWorld(t)
	manager := startScanningManager(t, w, "--metrics-workload-series-limit=1000")
	installWebhook(t, manager.webhookPort, manager.caPEM)
	shop := newNamespace(t, nil)
	_, _, pods := w.runDeployment(t, shop, "api", "shop/api", 2)

	scrape := func() (string, error) {
		code, body, err := httpStatus(manager.metricsURL, scraper)
		if err == nil && code != 200 {
			err = fmt.Errorf("GET /metrics: %d %s", code, body)
		}
		return body, err
	}
	g.Eventually(scrape, 60*time.Second, time.Second).Should(And(
		ContainSubstring(fmt.Sprintf(`vigil_namespace_vulnerabilities{namespace=%q,severity="critical"} 1`, shop)),
		ContainSubstring(fmt.Sprintf(`vigil_vulnerability_workload_info{container="c0",kind="Deployment",namespace=%q,severity="critical",vulnerability_id="CVE-2021-44228",workload="api"} 1`, shop)),
		MatchRegexp(`vigil_vulnerabilities\{severity="critical"\} [1-9]`),
		MatchRegexp(`vigil_image_scans\{phase="Scanned"\} [1-9]`),
		ContainSubstring("vigil_database_last_check_success 1"),
		MatchRegexp(`vigil_database_info\{schema_version="v6[^"]*"\} 1`),
		ContainSubstring("vigil_findings_metrics_error 0"),
	), func() string { return manager.logs() })

	// The workload stops: its series go at once, as its findings do.
	g.Expect(testenv.StopPods(ctx, env.Client, pods...)).To(Succeed())
	g.Eventually(scrape, 30*time.Second, time.Second).ShouldNot(ContainSubstring(fmt.Sprintf("namespace=%q", shop)))
}

// TestTheScanJobIsShapedByTheChartsValues: an administrator sets the scan Jobs' pull secret,
// tolerations, affinity, priority class, labels, annotations, ephemeral storage, proxy and CA
// bundle in the chart's values; the manager reads the rendered pod template, and the API server
// accepts the Job it builds with every one of them, still restricted.
func TestTheScanJobIsShapedByTheChartsValues(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	root, err := testenv.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	documents := renderChart(t, "ConfigMap", []string{filepath.Join(root, "test", "chart", "testdata", "values", "scan-jobs.yaml")})
	var podTemplate string
	for _, document := range documents {
		configMap := &corev1.ConfigMap{}
		g.Expect(yaml.Unmarshal([]byte(document), configMap)).To(Succeed())
		if configMap.Name == "story-vigil-scanner" {
			podTemplate = configMap.Data["pod-template.yaml"]
		}
	}
	g.Expect(podTemplate).NotTo(BeEmpty(), "the chart renders the scan Jobs' pod template")
	path := filepath.Join(t.TempDir(), "pod-template.yaml")
	g.Expect(os.WriteFile(path, []byte(podTemplate), 0o600)).To(Succeed())
	template, err := executor.LoadPodTemplate(path)
	g.Expect(err).NotTo(HaveOccurred())

	namespace := newNamespace(t, nil)
	jobs := executor.NewJobs(env.Client, env.Client, executor.JobOptions{
		Namespace: namespace, Image: "registry.example/vigil:1", ServiceAccountName: "vigil-scanner",
		ReportURL: "https://vigil-webhook.vigil-system.svc/v1/scan-reports", CASecretName: "vigil-webhook-tls",
		Timeout: 10 * time.Minute, Resources: *template.Resources, PodTemplate: template,
	}, nil)
	digest := "sha256:" + strings.Repeat("5e", 32)
	const scanUID = "7d3f9a2e-5b1c-4f8a-9e6d-2c4b8a1f0e57"
	g.Expect(jobs.Submit(ctx, executor.Request{Digest: digest, ScanUID: scanUID, Attempt: 1, Images: []executor.PinnedImage{{Reference: "registry.example/shop/api@" + digest}}})).To(Succeed())
	job := &batchv1.Job{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: executor.JobName(digest, scanUID, 1)}, job)).To(Succeed())
	pod := job.Spec.Template
	container := pod.Spec.Containers[0]
	g.Expect(pod.Annotations).To(HaveKeyWithValue("sidecar.istio.io/inject", "false"))
	g.Expect(pod.Labels).To(And(HaveKeyWithValue("team", "security"), HaveKeyWithValue(executor.ComponentLabel, executor.ComponentValue)))
	g.Expect(pod.Spec.ImagePullSecrets).To(ConsistOf(corev1.LocalObjectReference{Name: "vigil-pull"}, corev1.LocalObjectReference{Name: "scanner-mirror"}))
	g.Expect(pod.Spec.Tolerations).To(ConsistOf(HaveField("Key", "dedicated")))
	g.Expect(pod.Spec.Affinity.NodeAffinity).NotTo(BeNil())
	g.Expect(pod.Spec.PriorityClassName).To(Equal("vigil-scans"))
	g.Expect(container.Resources.Limits).NotTo(HaveKey(corev1.ResourceCPU), "the CPU limit was removed")
	g.Expect(container.Resources.Limits.StorageEphemeral().String()).To(Equal("8Gi"))
	g.Expect(container.Resources.Requests.StorageEphemeral().String()).To(Equal("2Gi"))
	g.Expect(container.Env).To(ContainElements(
		corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy.corp.example:3128"},
		corev1.EnvVar{Name: "SSL_CERT_DIR", Value: "/etc/ssl/certs:/etc/vigil/ca-bundle"},
		HaveField("Name", "NO_PROXY"),
	))
	g.Expect(container.VolumeMounts).To(ContainElement(corev1.VolumeMount{Name: "ca-bundle", MountPath: "/etc/vigil/ca-bundle", ReadOnly: true}))
	g.Expect(*container.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
	g.Expect(*container.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
	g.Expect(*pod.Spec.AutomountServiceAccountToken).To(BeFalse())
}
