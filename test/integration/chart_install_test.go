package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/vigil-dev/vigil/pkg/executor"
	namespacesetup "github.com/vigil-dev/vigil/reconciler/namespace"
	"github.com/vigil-dev/vigil/test/testenv"
)

// TestTheChartInstallsAndItsManagerRunsWithItsOwnRBAC installs the chart with helm into the test
// API server (with cert-manager's CRDs, as on a cluster with cert-manager), then runs the manager
// as a local process with the Deployment's own arguments and the chart's service account, so that
// the chart's RBAC is what the manager runs with.
func TestTheChartInstallsAndItsManagerRunsWithItsOwnRBAC(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	crds, err := testenv.CertManagerCRDDir()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(testenv.InstallCRDs(env, crds)).To(Succeed())

	// The README's install command.
	install := helmCommand(t, "install", "vigil", "charts/vigil", "--namespace", "vigil-system", "--create-namespace",
		"--set", "vulnerabilityScanning.enabled=true", "--kubeconfig", env.KubeconfigPath)
	out, err := install.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "helm install: %s", out)
	uninstall := helmCommand(t, "uninstall", "vigil", "--namespace", "vigil-system", "--kubeconfig", env.KubeconfigPath)
	t.Cleanup(func() {
		_ = uninstall.Run()
	})

	webhookConfig := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "vigil"}, webhookConfig)).To(Succeed())
	g.Expect(webhookConfig.Annotations).To(HaveKeyWithValue("cert-manager.io/inject-ca-from", "vigil-system/vigil-webhook"))
	g.Expect(*webhookConfig.Webhooks[0].FailurePolicy).To(Equal(admissionregistrationv1.Ignore))
	deployment := &appsv1.Deployment{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: "vigil-system", Name: "vigil"}, deployment)).To(Succeed())
	g.Expect(*deployment.Spec.Replicas).To(Equal(int32(2)))
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "vigil-pull-secret-reader"}, &rbacv1.ClusterRole{})).To(Succeed())
	// The manager holds no cluster-wide Secret read.
	managerRole := &rbacv1.ClusterRole{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: "vigil-manager"}, managerRole)).To(Succeed())
	for _, rule := range managerRole.Rules {
		for _, resource := range rule.Resources {
			g.Expect(resource).NotTo(Equal("secrets"), "the manager's ClusterRole grants %v on secrets", rule.Verbs)
		}
	}

	// cert-manager's issuance controllers do not run here: the test writes the serving
	// certificate's Secret as issuance would. cert-manager's real cainjector (its controllers, from
	// the cert-manager module) then injects the CA into the chart's webhook configuration.
	certDir := t.TempDir()
	caPEM, err := testenv.WriteServingCertificate(certDir, "vigil-webhook.vigil-system.svc", "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	secretData := map[string][]byte{"ca.crt": caPEM}
	for _, name := range []string{"tls.crt", "tls.key"} {
		secretData[name], err = os.ReadFile(filepath.Join(certDir, name))
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(env.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: "vigil-webhook-tls",
			Annotations: map[string]string{"cert-manager.io/certificate-name": "vigil-webhook"}},
		Type: corev1.SecretTypeTLS, Data: secretData,
	})).To(Succeed())
	runCAInjector(t)
	g.Eventually(func() ([]byte, error) {
		err := env.Client.Get(ctx, client.ObjectKey{Name: "vigil"}, webhookConfig)
		return webhookConfig.Webhooks[0].ClientConfig.CABundle, err
	}, 30*time.Second, 200*time.Millisecond).Should(Equal(caPEM), "cainjector injects the certificate's CA")

	// The manager, with the Deployment's arguments (ports and folders moved to this machine), the
	// certificate's files, and the chart's service account.
	kubeconfig := serviceAccountKubeconfig(t, "vigil-system", "vigil")
	args := localArgs(t, deployment.Spec.Template.Spec.Containers[0].Args, certDir)
	manager := startManagerProcess(t, kubeconfig, append(args, "--namespace=vigil-system", "--service-account-name=vigil"))
	manager.waitReady(t)

	// It sets up a new namespace with the chart's ClusterRole: its RBAC lets it bind that role.
	created := newNamespace(t, nil)
	g.Eventually(func() error {
		return env.Client.Get(ctx, client.ObjectKey{Namespace: created, Name: namespacesetup.RoleBindingName}, &rbacv1.RoleBinding{})
	}, 20*time.Second, 200*time.Millisecond).Should(Succeed(), func() string { return manager.logs() })
	g.Expect(manager.logs()).NotTo(ContainSubstring("forbidden"), "the chart's RBAC lacks a permission")

	// Vigil's namespace enforces the restricted Pod Security Standard: helm could not label the
	// namespace it created, the manager did at its start (the chart's podSecurity defaults).
	home := &corev1.Namespace{}
	g.Eventually(func() (map[string]string, error) {
		err := env.Client.Get(ctx, client.ObjectKey{Name: "vigil-system"}, home)
		return home.Labels, err
	}, 20*time.Second, 200*time.Millisecond).Should(And(
		HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"),
		HaveKeyWithValue("pod-security.kubernetes.io/audit", "restricted"),
		HaveKeyWithValue("pod-security.kubernetes.io/warn", "restricted"),
	), func() string { return manager.logs() })
	t.Cleanup(func() { // the other stories' pods in vigil-system are not the chart's
		_ = env.Client.Patch(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vigil-system"}},
			client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":null,"pod-security.kubernetes.io/audit":null,"pod-security.kubernetes.io/warn":null}}}`)))
	})
	assertVigilsPodsMeetRestricted(t, deployment)
}

// assertVigilsPodsMeetRestricted checks, in vigil-system enforcing restricted, that the API
// server admits the manager's pod as the chart's Deployment makes it and a scan Job's pod as
// the executor builds it from the chart's scanner template (with and without a user namespace),
// and refuses a privileged pod.
func assertVigilsPodsMeetRestricted(t *testing.T, deployment *appsv1.Deployment) {
	t.Helper()
	g := NewWithT(t)
	ctx := t.Context()
	admitted := func(spec corev1.PodSpec, labels map[string]string) error {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", GenerateName: "restricted-", Labels: labels}, Spec: spec}
		return env.Client.Create(ctx, pod, client.DryRunAll)
	}
	g.Expect(admitted(deployment.Spec.Template.Spec, deployment.Spec.Template.Labels)).To(Succeed(), "the manager's pod")

	scanner := &corev1.ConfigMap{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: "vigil-system", Name: "vigil-scanner"}, scanner)).To(Succeed())
	file := filepath.Join(t.TempDir(), "pod-template.yaml")
	g.Expect(os.WriteFile(file, []byte(scanner.Data["pod-template.yaml"]), 0o600)).To(Succeed())
	template, err := executor.LoadPodTemplate(file)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(template.Resources).NotTo(BeNil(), "the chart's scanner template carries the scanner's resources")
	for i, userNamespace := range []bool{false, true} {
		jobs := executor.NewJobs(env.Client, env.Client, executor.JobOptions{
			Namespace: "vigil-system", Image: "ghcr.io/vigil-dev/vigil:test", ServiceAccountName: "vigil-scanner",
			ReportURL: "https://vigil-webhook.vigil-system.svc:443/v1/scan-reports", CASecretName: "vigil-webhook-tls",
			Timeout: 10 * time.Minute, UserNamespace: userNamespace, Resources: *template.Resources, PodTemplate: template,
		}, nil)
		digest := fmt.Sprintf("sha256:%064d", i+1)
		const scanUID = "7d3f9a2e-5b1c-4f8a-9e6d-2c4b8a1f0e57"
		g.Expect(jobs.Submit(ctx, executor.Request{Digest: digest, ScanUID: scanUID, Attempt: 1,
			Images: []executor.PinnedImage{{Reference: "registry.example/shop/api@" + digest}}})).To(Succeed())
		job := &batchv1.Job{}
		g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: "vigil-system", Name: executor.JobName(digest, scanUID, 1)}, job)).To(Succeed())
		t.Cleanup(func() {
			_ = env.Client.Delete(context.Background(), job, client.PropagationPolicy(metav1.DeletePropagationBackground))
		})
		g.Expect(admitted(job.Spec.Template.Spec, job.Spec.Template.Labels)).To(Succeed(), "a scan Job's pod (user namespace %v)", userNamespace)
	}

	privileged := deployment.Spec.Template.Spec.DeepCopy()
	privileged.Containers[0].SecurityContext.Privileged = ptr.To(true)
	privileged.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr.To(true)
	err = admitted(*privileged, nil)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a privileged pod in Vigil's namespace: %v", err)
	g.Expect(err.Error()).To(ContainSubstring(`violates PodSecurity "restricted:`))
}

// runCAInjector runs cert-manager's cainjector controllers for webhook configurations until the
// test ends.
func runCAInjector(t *testing.T) {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, certmanagerv1.AddToScheme, apiextensionsv1.AddToScheme, apiregistrationv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	// cainjector names its server-side apply field manager after the client's user agent, as
	// cert-manager's own command sets it.
	config := rest.CopyConfig(env.Config)
	config.UserAgent = "cert-manager-cainjector/v1.21.2"
	mgr, err := ctrl.NewManager(config, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	err = cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor:        map[string]bool{cainjector.ValidatingWebhookConfigurationName: true},
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("cainjector: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// localArgs moves the Deployment's arguments to this machine: loopback ports, local folders, the
// webhook certificate from certDir.
func localArgs(t *testing.T, args []string, certDir string) []string {
	t.Helper()
	ports, err := testenv.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The scan Jobs' pod template, as the chart's ConfigMap mounts it.
	scannerDir := t.TempDir()
	scanner := &corev1.ConfigMap{}
	if err := env.Client.Get(t.Context(), client.ObjectKey{Namespace: "vigil-system", Name: "vigil-scanner"}, scanner); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scannerDir, "pod-template.yaml"), []byte(scanner.Data["pod-template.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	replacements := map[string]string{
		"/etc/vigil/scanner":                                scannerDir,
		"--metrics-bind-address=:8443":                      fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]),
		"--health-probe-bind-address=:8081":                 fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		"--webhook-port=9443":                               fmt.Sprintf("--webhook-port=%d", ports[2]),
		"/var/lib/vigil":                                    dir,
		"/etc/vigil/webhook-tls":                            certDir,
		"https://grype.anchore.io/databases/v6/latest.json": "http://127.0.0.1:1/latest.json",
	}
	var local []string
	for _, arg := range args {
		for from, to := range replacements {
			arg = strings.ReplaceAll(arg, from, to)
		}
		local = append(local, arg)
	}
	return append(local, "--webhook-host=127.0.0.1")
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as a service account.
func serviceAccountKubeconfig(t *testing.T, namespace, name string) string {
	t.Helper()
	clientset, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	token, err := clientset.CoreV1().ServiceAccounts(namespace).CreateToken(t.Context(), name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	config := clientcmdapi.NewConfig()
	config.Clusters["test"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	config.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: token.Status.Token}
	config.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "sa"}
	config.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*config, path); err != nil {
		t.Fatal(err)
	}
	return path
}
