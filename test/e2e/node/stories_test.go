//go:build e2e

package node

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/executor"
	namespacesetup "github.com/vigil-dev/vigil/reconciler/namespace"
	"github.com/vigil-dev/vigil/test/cluster"
	"github.com/vigil-dev/vigil/test/fixtures/images"
)

const (
	release   = "vigil"
	namespace = "vigil-system"
	webhook   = "images.vigil.dev"
)

// installArgs is the README's install command, plus the values this machine needs: the image's
// location in the cluster's registry, the registries reached over plain HTTP, and the fixture
// vulnerability database (grype's public one is not reachable here).
func installArgs(extra ...string) []string {
	args := []string{"install", release, "charts/vigil", "--namespace", namespace, "--create-namespace",
		"--set", "vulnerabilityScanning.enabled=true",
		"--set", "image.repository=" + imageRepo, "--set", "image.tag=e2e",
		"--set", fmt.Sprintf("vulnerabilityScanning.registries.plainHTTP={%s,%s}", c.Registry, c.PrivateRegistry),
		"--set", "database.listingURL=" + dbURL,
		"--wait", "--timeout", "5m"}
	return append(args, extra...)
}

// Story: a platform engineer installs Vigil as the README says; every pod runs and is Ready,
// each manager replica keeps its SBOMs on a volume of the cluster's default StorageClass,
// cert-manager issues the webhook's certificate and injects its CA, and the API server calls the
// webhook through its Service.
func TestInstallAsTheREADMESays(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	helm(t, installArgs()...)

	// The cluster provides storage, so the chart's default is a StatefulSet whose replicas each
	// claim a volume of the default class.
	manager := &appsv1.StatefulSet{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: release}, manager)).To(Succeed())
	g.Expect(manager.Status.ReadyReplicas).To(Equal(*manager.Spec.Replicas), "every manager pod is Ready")
	pods := managerPods(t)
	g.Expect(pods).To(HaveLen(2))
	for _, pod := range pods {
		g.Expect(pod.Spec.NodeName).To(Equal("vigil-node"))
		g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
		claim := &corev1.PersistentVolumeClaim{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "data-" + pod.Name}, claim)).To(Succeed())
		g.Expect(claim.Status.Phase).To(Equal(corev1.ClaimBound), "the claim of %s", pod.Name)
		g.Expect(ptr.Deref(claim.Spec.StorageClassName, "")).To(Equal(cluster.StorageClassName))
	}

	// cert-manager issued the chart's CA and the serving certificate; cainjector injected the CA.
	secret := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "vigil-webhook-tls"}, secret)).To(Succeed())
	g.Expect(secret.Annotations).To(HaveKeyWithValue("cert-manager.io/issuer-name", "vigil-ca"))
	webhookConfig := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: release}, webhookConfig)).To(Succeed())
	g.Expect(webhookConfig.Webhooks[0].ClientConfig.CABundle).To(Equal(secret.Data["ca.crt"]))

	// The API server calls the webhook through its Service: its own metrics count the answers.
	createNamespace(t, "install-check")
	runPod(t, "install-check", "probe", pauseImage(t))
	g.Eventually(func() string {
		return kubectl(t, "get", "--raw", "/metrics")
	}, time.Minute, time.Second).Should(MatchRegexp(`apiserver_admission_webhook_request_total\{[^}]*code="200"[^}]*name="` + regexp.QuoteMeta(webhook) + `"`))
	g.Expect(kubectl(t, "get", "--raw", "/metrics")).NotTo(MatchRegexp(`apiserver_admission_webhook_fail_open_count\{[^}]*name="` + regexp.QuoteMeta(webhook) + `"[^}]*\} [1-9]`))

	// An operator reads the manager's logs and runs a command in its container: the API server
	// reaches the kubelet, and the kubelet the container runtime's streaming server.
	g.Expect(kubectl(t, "logs", "-n", namespace, pods[0].Name)).To(ContainSubstring("Starting"))
	g.Expect(kubectl(t, "exec", "-n", namespace, pods[0].Name, "--", "/vigil", "--help")).To(ContainSubstring("Usage:"))

	// The manager labelled its namespace: the kubelet's node runs only restricted pods there (the
	// scan Jobs of the next stories, the manager's own after an upgrade).
	home := &corev1.Namespace{}
	g.Eventually(func() map[string]string {
		_ = k8s.Get(ctx, client.ObjectKey{Name: namespace}, home)
		return home.Labels
	}, time.Minute, time.Second).Should(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
	privileged := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "privileged-probe"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: pauseImage(t),
			SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}}}
	err := k8s.Create(ctx, privileged, client.DryRunAll)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a privileged pod in Vigil's namespace: %v", err)
}

// The sample workloads' images, each vulnerable, each pushed with the pause binary so it runs.
type sample struct {
	kind, name, container, cve string
	build                      func() (v1.Image, error)
}

var samples = []sample{
	{"Deployment", "api", "api", "cve-2021-44228", images.JavaLog4j},
	{"StatefulSet", "db", "postgres", "cve-2023-0286", images.DebianOpenSSL},
	{"DaemonSet", "agent", "agent", "cve-2021-44906", images.NodeMinimist},
	{"CronJob", "report", "report", "cve-2020-14343", images.PythonPyYAML},
	{"Pod", "debug", "debug", "cve-2022-32149", images.GoTextBinary},
}

// Story: a Deployment, a StatefulSet, a DaemonSet, a CronJob and a bare Pod run vulnerable
// images; each digest is scanned once by a real scan Job pod, and the vulnerability view shows
// each with its workload, container and image.
func TestWorkloadsAreScannedByRealJobsAndShown(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	createNamespace(t, "shop")
	refs := map[string]string{}
	for _, s := range samples {
		img, err := s.build()
		g.Expect(err).NotTo(HaveOccurred())
		img, err = c.WithPause(img)
		g.Expect(err).NotTo(HaveOccurred())
		refs[s.name], err = c.Push(ctx, img, "shop/"+s.name+":1.0")
		g.Expect(err).NotTo(HaveOccurred())
	}
	tag := func(s string) string { return c.Registry + "/shop/" + s + ":1.0" }
	labels := func(name string) map[string]string { return map[string]string{"app": name} }
	podSpec := func(name string) corev1.PodTemplateSpec {
		return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels(name)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: containerOf(name), Image: tag(name)}}}}
	}
	selector := func(name string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: labels(name)} }
	g.Expect(k8s.Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: selector("api"), Template: podSpec("api")}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"},
		Spec: appsv1.StatefulSetSpec{Selector: selector("db"), Template: podSpec("db")}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "agent"},
		Spec: appsv1.DaemonSetSpec{Selector: selector("agent"), Template: podSpec("agent")}})).To(Succeed())
	cronPod := podSpec("report")
	cronPod.Spec.RestartPolicy = corev1.RestartPolicyNever
	g.Expect(k8s.Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "report"},
		Spec: batchv1.CronJobSpec{Schedule: "* * * * *", ConcurrencyPolicy: batchv1.ForbidConcurrent,
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: cronPod}}}})).To(Succeed())
	bare := podSpec("debug")
	g.Expect(k8s.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "debug", Labels: bare.Labels},
		Spec: bare.Spec})).To(Succeed())

	// Every workload runs: the CronJob's first pod starts within its first minute.
	g.Eventually(func() int { return len(runningPods(t, "shop")) }, 3*time.Minute, 2*time.Second).Should(Equal(6))

	// Each digest is scanned, once, by a real scan Job whose pod ran to completion.
	for _, s := range samples {
		digest := digestOf(refs[s.name])
		g.Eventually(func() vigilv1alpha1.ImageScanPhase {
			return imageScan(t, digest).Status.Phase
		}, 5*time.Minute, 2*time.Second).Should(Equal(vigilv1alpha1.ImageScanScanned), "the %s image (%s); manager logs in %s", s.kind, digest, logDir)
		g.Expect(imageScan(t, digest).Status.Attempts).To(Equal(int32(1)), "the %s image was scanned more than once", s.kind)
	}

	// kubectl get vulnerabilities lists them; describe shows the workload, container and image.
	view := kubectl(t, "get", "vulnerabilities")
	for _, s := range samples {
		g.Expect(view).To(MatchRegexp(`(?m)^`+s.cve+`\s`), "kubectl get vulnerabilities lists %s", s.cve)
		detail := kubectl(t, "describe", "vulnerability", s.cve)
		g.Expect(detail).To(ContainSubstring(refs[s.name][strings.Index(refs[s.name], "@")+1:]), "%s shows the image's digest", s.cve)
		g.Expect(detail).To(MatchRegexp(`Kind:\s+`+s.kind), "%s shows the %s", s.cve, s.kind)
		g.Expect(detail).To(MatchRegexp(`Name:\s+`+s.name), "%s shows the workload %s", s.cve, s.name)
		g.Expect(detail).To(MatchRegexp(`Container:\s+`+containerOf(s.name)), "%s shows the container", s.cve)
	}
}

// Story: scaling a Deployment to zero and deleting a bare pod remove their findings within a
// second of the kubelet reporting their containers stopped.
func TestStoppedWorkloadsLoseTheirFindings(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	for _, stop := range []struct {
		cve, kind, name string
		do              func()
	}{
		{"cve-2021-44228", "Deployment", "api", func() { kubectl(t, "scale", "deployment", "api", "-n", "shop", "--replicas=0") }},
		{"cve-2022-32149", "Pod", "debug", func() { kubectl(t, "delete", "pod", "debug", "-n", "shop", "--wait=false") }},
	} {
		g.Expect(workloadsOf(t, stop.cve)).To(ContainElement(stop.kind + "/" + stop.name))
		stopped := watchContainersStopped(t, "shop", "app="+stop.name)
		stop.do()
		var stoppedAt time.Time
		g.Eventually(stopped, 2*time.Minute).Should(Receive(&stoppedAt))
		g.Eventually(func() []string { return workloadsOf(t, stop.cve) }, time.Minute, 20*time.Millisecond).
			ShouldNot(ContainElement(stop.kind + "/" + stop.name))
		removal := time.Since(stoppedAt)
		t.Logf("%s %s: its findings went %v after the kubelet reported its containers stopped", stop.kind, stop.name, removal.Round(time.Millisecond))
		recordMeasurement(t, fmt.Sprintf("%s %s stopped -> findings removed: %v", stop.kind, stop.name, removal.Round(time.Millisecond)))
		g.Expect(removal).To(BeNumerically("<", time.Second+200*time.Millisecond), "findings removed within a second (plus polling)")
	}
	_ = ctx
}

// Story: a private image pulled with its namespace's pull secret is scanned with that secret.
func TestPrivateImageWithPullSecretIsScanned(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	createNamespace(t, "private")
	img, err := images.AlpineOpenSSL()
	g.Expect(err).NotTo(HaveOccurred())
	img, err = c.WithPause(img)
	g.Expect(err).NotTo(HaveOccurred())
	ref, err := c.PushPrivate(ctx, img, "private/app:1.0")
	g.Expect(err).NotTo(HaveOccurred())
	kubectl(t, "create", "secret", "docker-registry", "registry-auth", "-n", "private",
		"--docker-server="+c.PrivateRegistry, "--docker-username="+c.PrivateUser, "--docker-password="+c.PrivatePassword)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "private", Name: "app", Labels: map[string]string{"app": "app"}},
		Spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry-auth"}},
			Containers: []corev1.Container{{Name: "app", Image: c.PrivateRegistry + "/private/app:1.0"}}}}
	g.Expect(k8s.Create(ctx, pod)).To(Succeed())
	g.Eventually(func() vigilv1alpha1.ImageScanPhase {
		return imageScan(t, digestOf(ref)).Status.Phase
	}, 5*time.Minute, 2*time.Second).Should(Equal(vigilv1alpha1.ImageScanScanned))
	g.Expect(workloadsOf(t, "cve-2023-0286")).To(ContainElement("Pod/app"))
}

// Story: a namespace created after the install gets Vigil's RoleBinding and its images scanned.
func TestNewNamespaceIsSetUpAndScanned(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	createNamespace(t, "late")
	g.Eventually(func() error {
		return k8s.Get(ctx, client.ObjectKey{Namespace: "late", Name: namespacesetup.RoleBindingName}, &rbacv1.RoleBinding{})
	}, time.Minute, time.Second).Should(Succeed())
	img, err := images.NodeMinimist()
	g.Expect(err).NotTo(HaveOccurred())
	img, err = images.Append(img, images.Layer{"/app/late.txt": []byte("late")})
	g.Expect(err).NotTo(HaveOccurred())
	img, err = c.WithPause(img)
	g.Expect(err).NotTo(HaveOccurred())
	ref, err := c.Push(ctx, img, "late/app:1.0")
	g.Expect(err).NotTo(HaveOccurred())
	runPod(t, "late", "app", c.Registry+"/late/app:1.0")
	g.Eventually(func() vigilv1alpha1.ImageScanPhase {
		return imageScan(t, digestOf(ref)).Status.Phase
	}, 5*time.Minute, 2*time.Second).Should(Equal(vigilv1alpha1.ImageScanScanned))
}

// Story: the leader manager pod is deleted while scans run; nothing is lost and no image is
// scanned twice beyond the one in flight.
func TestLeaderLossLosesNoScan(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	createNamespace(t, "failover")
	var digests []string
	for i := range 6 {
		img, err := images.DebianOpenSSL()
		g.Expect(err).NotTo(HaveOccurred())
		img, err = images.Append(img, images.Layer{"/app/id": []byte(fmt.Sprint(i))})
		g.Expect(err).NotTo(HaveOccurred())
		img, err = c.WithPause(img)
		g.Expect(err).NotTo(HaveOccurred())
		ref, err := c.Push(ctx, img, fmt.Sprintf("failover/app%d:1.0", i))
		g.Expect(err).NotTo(HaveOccurred())
		digests = append(digests, digestOf(ref))
		runPod(t, "failover", fmt.Sprintf("app%d", i), fmt.Sprintf("%s/failover/app%d:1.0", c.Registry, i))
	}
	// Delete the leader as soon as a scan Job runs.
	g.Eventually(func() int {
		jobs := &batchv1.JobList{}
		_ = k8s.List(ctx, jobs, client.InNamespace(namespace), client.MatchingLabels{executor.ComponentLabel: executor.ComponentValue})
		active := 0
		for _, job := range jobs.Items {
			if job.Status.Active > 0 {
				active++
			}
		}
		return active
	}, 2*time.Minute, 200*time.Millisecond).Should(BeNumerically(">", 0))
	leader := leaderPod(t)
	kubectl(t, "delete", "pod", "-n", namespace, leader, "--wait=false")
	for _, digest := range digests {
		g.Eventually(func() vigilv1alpha1.ImageScanPhase {
			return imageScan(t, digest).Status.Phase
		}, 8*time.Minute, 2*time.Second).Should(Equal(vigilv1alpha1.ImageScanScanned))
	}
	twice := 0
	for _, digest := range digests {
		if imageScan(t, digest).Status.Attempts > 1 {
			twice++
		}
	}
	g.Expect(twice).To(BeNumerically("<=", 2), "only the scans in flight when the leader went are run again (concurrency 2)")
	g.Expect(workloadsOf(t, "cve-2023-0286")).To(ContainElements("Pod/app0", "Pod/app5"))
}

// Story: every manager pod restarts (`kubectl rollout restart`), each keeping its volume: no
// Vulnerability goes missing for a moment, no image is pulled or scanned again, no scan result
// or finding is rewritten, and the new leader carries on with a new image.
func TestRestartOfEveryManagerKeepsEveryFinding(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	// Every image of the earlier stories is done with.
	scans := &vigilv1alpha1.ImageScanList{}
	g.Eventually(func() []vigilv1alpha1.ImageScanPhase {
		g.Expect(k8s.List(ctx, scans)).To(Succeed())
		var busy []vigilv1alpha1.ImageScanPhase
		for _, scan := range scans.Items {
			if phase := scan.Status.Phase; phase == "" || phase == vigilv1alpha1.ImageScanPending || phase == vigilv1alpha1.ImageScanScanning {
				busy = append(busy, phase)
			}
		}
		return busy
	}, 5*time.Minute, time.Second).Should(BeEmpty())
	before := &vigilv1alpha1.VulnerabilityList{}
	g.Expect(k8s.List(ctx, before)).To(Succeed())
	g.Expect(before.Items).NotTo(BeEmpty())
	results := map[string]vigilv1alpha1.ImageScanStatus{}
	pulls := map[string]int{}
	for _, scan := range scans.Items {
		results[scan.Name] = scanResult(scan.Status)
		for _, reference := range scan.Spec.References {
			if repository, ok := strings.CutPrefix(reference.Image, c.Registry+"/"); ok {
				repository, _, _ = strings.Cut(strings.Split(repository, "@")[0], ":")
				pulls[repository], _ = c.RegistryRequests(repository)
			}
		}
	}
	g.Expect(pulls).NotTo(BeEmpty())
	stored := storedSBOMs(t)
	for _, scan := range scans.Items {
		if scan.Status.Phase == vigilv1alpha1.ImageScanScanned {
			g.Expect(stored).To(HaveKey(scan.Spec.Digest), "the SBOM of ImageScan %s on a manager's volume", scan.Name)
		}
	}
	oldPods := map[types.UID]bool{}
	for _, pod := range managerPods(t) {
		oldPods[pod.UID] = true
	}

	// Watch the view while the managers restart: every Vulnerability that existed stays.
	missing := make(chan string, 1)
	watching, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go func() {
		for watching.Err() == nil {
			now := &vigilv1alpha1.VulnerabilityList{}
			if err := k8s.List(watching, now); err == nil {
				names := map[string]bool{}
				for _, v := range now.Items {
					names[v.Name] = true
				}
				for _, v := range before.Items {
					if !names[v.Name] {
						select {
						case missing <- v.Name:
						default:
						}
						return
					}
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	kubectl(t, "rollout", "restart", "statefulset", release, "-n", namespace)
	kubectl(t, "rollout", "status", "statefulset", release, "-n", namespace, "--timeout=5m")
	g.Eventually(func() bool {
		pods := managerPods(t)
		for _, pod := range pods {
			if oldPods[pod.UID] {
				return false
			}
		}
		return len(pods) == 2
	}, 3*time.Minute, time.Second).Should(BeTrue(), "both manager pods are new")

	// The new leader serves: a new image is scanned and shown.
	createNamespace(t, "restarted")
	img, err := images.DebianOpenSSL()
	g.Expect(err).NotTo(HaveOccurred())
	img, err = images.Append(img, images.Layer{"/app/restarted": []byte("1")})
	g.Expect(err).NotTo(HaveOccurred())
	img, err = c.WithPause(img)
	g.Expect(err).NotTo(HaveOccurred())
	ref, err := c.Push(ctx, img, "restarted/app:1.0")
	g.Expect(err).NotTo(HaveOccurred())
	runPod(t, "restarted", "app", c.Registry+"/restarted/app:1.0")
	g.Eventually(func() vigilv1alpha1.ImageScanPhase {
		return imageScan(t, digestOf(ref)).Status.Phase
	}, 5*time.Minute, time.Second).Should(Equal(vigilv1alpha1.ImageScanScanned))
	g.Expect(imageScan(t, digestOf(ref)).Status.Attempts).To(Equal(int32(1)))
	g.Eventually(func() []string {
		vulnerability := &vigilv1alpha1.Vulnerability{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: "cve-2023-0286"}, vulnerability); err != nil {
			return nil
		}
		var namespaces []string
		for _, w := range vulnerability.Status.Workloads {
			namespaces = append(namespaces, w.Namespace)
		}
		return namespaces
	}, time.Minute, time.Second).Should(ContainElement("restarted"))
	stopWatching()
	select {
	case name := <-missing:
		t.Fatalf("Vulnerability %s went missing while the managers restarted", name)
	default:
	}

	// Nothing was pulled again: the SBOMs stayed on the managers' volumes.
	kept := storedSBOMs(t)
	for digest := range stored {
		g.Expect(kept).To(HaveKey(digest), "the SBOM of %s after the restart", digest)
	}
	for repository, count := range pulls {
		now, err := c.RegistryRequests(repository)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(now).To(Equal(count), "requests to the registry for %s after the restart", repository)
	}
	// No scan result was written again (only the running images' lastRunningTime may renew).
	g.Expect(k8s.List(ctx, scans)).To(Succeed())
	for _, scan := range scans.Items {
		if previous, ok := results[scan.Name]; ok {
			g.Expect(scanResult(scan.Status)).To(Equal(previous), "ImageScan %s after the restart", scan.Name)
		}
	}
	// No finding was written again, but those of the new image.
	after := &vigilv1alpha1.VulnerabilityList{}
	g.Expect(k8s.List(ctx, after)).To(Succeed())
	previous := map[string]vigilv1alpha1.Vulnerability{}
	for _, v := range before.Items {
		previous[v.Name] = v
	}
	for _, v := range after.Items {
		old, ok := previous[v.Name]
		if !ok || slices.ContainsFunc(v.Status.Workloads, func(w vigilv1alpha1.AffectedWorkload) bool { return w.Namespace == "restarted" }) {
			continue
		}
		g.Expect(v.ResourceVersion).To(Equal(old.ResourceVersion), "Vulnerability %s was written after the restart: %+v, before %+v", v.Name, v.Status, old.Status)
	}
}

// storedSBOMs are the digests whose SBOM is on a manager pod's volume: the local volumes bound to
// their claims, read on the node.
func storedSBOMs(t *testing.T) map[string]bool {
	t.Helper()
	stored := map[string]bool{}
	for _, pod := range managerPods(t) {
		claim := &corev1.PersistentVolumeClaim{}
		if err := k8s.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: "data-" + pod.Name}, claim); err != nil {
			t.Fatal(err)
		}
		volume := &corev1.PersistentVolume{}
		if err := k8s.Get(t.Context(), client.ObjectKey{Name: claim.Spec.VolumeName}, volume); err != nil {
			t.Fatal(err)
		}
		files, err := filepath.Glob(filepath.Join(volume.Spec.Local.Path, "sboms", "sha256", "*.json.gz"))
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			stored["sha256:"+strings.TrimSuffix(filepath.Base(file), ".json.gz")] = true
		}
	}
	return stored
}

// scanResult is an ImageScan's status without its lastRunningTime, which the retention
// collector renews while the image runs.
func scanResult(status vigilv1alpha1.ImageScanStatus) vigilv1alpha1.ImageScanStatus {
	result := *status.DeepCopy()
	result.LastRunningTime = nil
	return result
}

// Story: a finished scan Job goes with its Secret and pod: its TTL and the garbage collector are
// Kubernetes' own here.
func TestFinishedScanJobsAreCollected(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	jobs := &batchv1.JobList{}
	g.Expect(k8s.List(ctx, jobs, client.InNamespace(namespace), client.MatchingLabels{executor.ComponentLabel: executor.ComponentValue})).To(Succeed())
	var finished *batchv1.Job
	for i := range jobs.Items {
		if jobs.Items[i].Status.Succeeded > 0 {
			finished = &jobs.Items[i]
			break
		}
	}
	g.Expect(finished).NotTo(BeNil(), "a scan Job ran to completion")
	g.Expect(finished.Spec.TTLSecondsAfterFinished).NotTo(BeNil())
	digestLabel := client.MatchingLabels{executor.DigestLabel: finished.Labels[executor.DigestLabel]}
	secret := &corev1.Secret{}
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(finished), secret)).To(Succeed())
	g.Expect(secret.OwnerReferences).To(ContainElement(HaveField("UID", finished.UID)))
	// The chart's TTL is ten minutes; the story shortens this one Job's so as not to wait.
	kubectl(t, "patch", "job", "-n", namespace, finished.Name, "--type=merge", "-p", `{"spec":{"ttlSecondsAfterFinished":1}}`)
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(finished), &batchv1.Job{}))
	}, time.Minute, time.Second).Should(BeTrue(), "the TTL controller deletes the finished Job")
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(finished), &corev1.Secret{}))
	}, time.Minute, time.Second).Should(BeTrue(), "the garbage collector deletes its Secret")
	g.Eventually(func() int {
		pods := &corev1.PodList{}
		_ = k8s.List(ctx, pods, client.InNamespace(namespace), digestLabel)
		return len(pods.Items)
	}, time.Minute, time.Second).Should(Equal(0), "the garbage collector deletes its pod")
}

// Story: helm upgrade raises the scanner's memory limit; the next scan Job carries it, and an
// image too large for the limit ends TooLarge with the reason the README promises.
func TestUpgradeChangesTheScannerLimit(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	helm(t, "upgrade", release, "charts/vigil", "--namespace", namespace, "--reset-then-reuse-values",
		"--set", "resources.scanner.limits.memory=1536Mi", "--set", "resources.scanner.requests.memory=64Mi", "--wait", "--timeout", "5m")
	createNamespace(t, "upgraded")
	img, err := images.PythonPyYAML()
	g.Expect(err).NotTo(HaveOccurred())
	img, err = images.Append(img, images.Layer{"/app/upgraded": []byte("1")})
	g.Expect(err).NotTo(HaveOccurred())
	img, err = c.WithPause(img)
	g.Expect(err).NotTo(HaveOccurred())
	ref, err := c.Push(ctx, img, "upgraded/app:1.0")
	g.Expect(err).NotTo(HaveOccurred())
	runPod(t, "upgraded", "app", c.Registry+"/upgraded/app:1.0")
	g.Eventually(func() (string, error) {
		scan := &vigilv1alpha1.ImageScan{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ImageScanName(digestOf(ref))}, scan); err != nil {
			return "", err
		}
		job := &batchv1.Job{}
		err := k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: executor.JobName(digestOf(ref), scan.UID, 1)}, job)
		if err != nil {
			return "", err
		}
		return job.Spec.Template.Spec.Containers[0].Resources.Limits.Memory().String(), nil
	}, 3*time.Minute, time.Second).Should(Equal("1536Mi"))

	// An image whose SBOM needs more memory than a small limit: the scan Job is OOMKilled.
	helm(t, "upgrade", release, "charts/vigil", "--namespace", namespace, "--reset-then-reuse-values",
		"--set", "resources.scanner.limits.memory=48Mi", "--set", "resources.scanner.requests.memory=32Mi", "--wait", "--timeout", "5m")
	large, err := images.LargeNodeApp(20000)
	g.Expect(err).NotTo(HaveOccurred())
	large, err = c.WithPause(large)
	g.Expect(err).NotTo(HaveOccurred())
	largeRef, err := c.Push(ctx, large, "upgraded/large:1.0")
	g.Expect(err).NotTo(HaveOccurred())
	runPod(t, "upgraded", "large", c.Registry+"/upgraded/large:1.0")
	g.Eventually(func() vigilv1alpha1.ImageScanPhase {
		return imageScan(t, digestOf(largeRef)).Status.Phase
	}, 5*time.Minute, 2*time.Second).Should(Equal(vigilv1alpha1.ImageScanTooLarge))
	scanned := imageScan(t, digestOf(largeRef))
	g.Expect(scanned.Status.Conditions).To(ContainElement(And(HaveField("Reason", "OOMKilled"),
		HaveField("Message", ContainSubstring("raise resources.scanner.limits.memory")))))
}

// Story: a platform team turns on the in-cluster dashboard and reaches it with kubectl
// port-forward; it serves the view to a token that may list vulnerabilities and to no other.
func TestInClusterDashboardThroughPortForward(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	helm(t, "upgrade", release, "charts/vigil", "--namespace", namespace, "--reuse-values",
		"--set", "dashboard.enabled=true", "--wait", "--timeout", "5m")
	createNamespace(t, "viewers")
	kubectl(t, "create", "serviceaccount", "reader", "-n", "viewers")
	kubectl(t, "create", "serviceaccount", "stranger", "-n", "viewers")
	kubectl(t, "create", "clusterrole", "vulnerability-reader", "--verb=get,list,watch", "--resource=vulnerabilities.vigil.dev")
	kubectl(t, "create", "clusterrolebinding", "vulnerability-reader", "--clusterrole=vulnerability-reader", "--serviceaccount=viewers:reader")
	readerToken := strings.TrimSpace(kubectl(t, "create", "token", "reader", "-n", "viewers"))
	strangerToken := strings.TrimSpace(kubectl(t, "create", "token", "stranger", "-n", "viewers"))

	forward := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), "--kubeconfig", c.KubeconfigPath,
		"port-forward", "-n", namespace, "svc/"+release+"-dashboard", "--address", "127.0.0.1", ":8080")
	stdout, err := forward.StdoutPipe()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(forward.Start()).To(Succeed())
	defer func() {
		_ = forward.Process.Kill()
		_ = forward.Wait()
	}()
	address := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			if m := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+)`).FindStringSubmatch(lines.Text()); m != nil {
				address <- m[1]
			}
		}
	}()
	var base string
	select {
	case a := <-address:
		base = "http://" + a
	case <-time.After(time.Minute):
		t.Fatal("kubectl port-forward printed no local address within a minute")
	}

	get := func(path, token string) (int, string) {
		request, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		g.Expect(err).NotTo(HaveOccurred())
		if token != "" {
			request.Header.Set("Authorization", "Bearer "+token)
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		response, err := client.Do(request)
		g.Expect(err).NotTo(HaveOccurred())
		defer response.Body.Close()
		body, err := io.ReadAll(response.Body)
		g.Expect(err).NotTo(HaveOccurred())
		return response.StatusCode, string(body)
	}
	status, body := get("/?q=cve-2023-0286", readerToken)
	g.Expect(status).To(Equal(http.StatusOK))
	g.Expect(strings.ToLower(body)).To(ContainSubstring("cve-2023-0286"))
	status, _ = get("/", strangerToken)
	g.Expect(status).To(Equal(http.StatusForbidden), "a token that may not list vulnerabilities sees nothing")
	status, _ = get("/", "")
	g.Expect(status).To(Equal(http.StatusSeeOther), "without a token the dashboard asks to log in")
	status, _ = get("/vulnerabilities.csv", "not-a-token")
	g.Expect(status).To(Equal(http.StatusUnauthorized))
}

// Story: helm uninstall removes Vigil's pods, their volume claims, its webhook configuration and
// RBAC; the cluster admits pods as before.
func TestUninstallLeavesAWorkingCluster(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	helm(t, "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "5m")
	g.Eventually(func() int { return len(managerPods(t)) }, 2*time.Minute, time.Second).Should(Equal(0))
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: release}, &admissionregistrationv1.ValidatingWebhookConfiguration{}))).To(BeTrue())
	for _, name := range []string{"vigil-manager", "vigil-pull-secret-reader"} {
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: name}, &rbacv1.ClusterRole{}))).To(BeTrue(), "ClusterRole %s", name)
	}
	bindings := &rbacv1.ClusterRoleBindingList{}
	g.Expect(k8s.List(ctx, bindings, client.MatchingLabels{"app.kubernetes.io/instance": release})).To(Succeed())
	g.Expect(bindings.Items).To(BeEmpty())
	// The managers' claims go with them (the StatefulSet's claim retention policy).
	g.Eventually(func() []corev1.PersistentVolumeClaim {
		claims := &corev1.PersistentVolumeClaimList{}
		g.Expect(k8s.List(ctx, claims, client.InNamespace(namespace))).To(Succeed())
		return claims.Items
	}, 2*time.Minute, time.Second).Should(BeEmpty())
	createNamespace(t, "after")
	runPod(t, "after", "app", pauseImage(t))
}

// managerPods are the chart's manager pods (not scan Job pods).
func managerPods(t *testing.T) []corev1.Pod {
	t.Helper()
	pods := &corev1.PodList{}
	if err := k8s.List(t.Context(), pods, client.InNamespace(namespace), client.MatchingLabels{"app.kubernetes.io/instance": release}); err != nil {
		t.Fatal(err)
	}
	var managers []corev1.Pod
	for _, pod := range pods.Items {
		if pod.Labels[executor.ComponentLabel] != executor.ComponentValue && pod.DeletionTimestamp == nil {
			managers = append(managers, pod)
		}
	}
	return managers
}

// leaderPod is the manager pod holding the leader election lease.
func leaderPod(t *testing.T) string {
	t.Helper()
	out := kubectl(t, "get", "lease", "-n", namespace, "-o", "jsonpath={.items[*].spec.holderIdentity}")
	for _, pod := range managerPods(t) {
		if strings.Contains(out, pod.Name) {
			return pod.Name
		}
	}
	t.Fatalf("no manager pod holds the lease (%q)", out)
	return ""
}

func createNamespace(t testing.TB, name string) {
	t.Helper()
	if err := k8s.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	// Pods need the namespace's default service account, which the controller-manager creates.
	NewWithT(t).Eventually(func() error {
		return k8s.Get(t.Context(), client.ObjectKey{Namespace: name, Name: "default"}, &corev1.ServiceAccount{})
	}, time.Minute, 200*time.Millisecond).Should(Succeed())
}

// runPod runs a bare pod and waits until it is Running.
func runPod(t *testing.T, namespace, name, image string) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image,
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m")}}}}}}
	if err := k8s.Create(t.Context(), pod); err != nil {
		t.Fatal(err)
	}
	NewWithT(t).Eventually(func() corev1.PodPhase {
		_ = k8s.Get(t.Context(), client.ObjectKeyFromObject(pod), pod)
		return pod.Status.Phase
	}, 2*time.Minute, time.Second).Should(Equal(corev1.PodRunning), "pod %s/%s", namespace, name)
}

// pauseImage is an image of the pause binary alone, with no package.
func pauseImage(t *testing.T) string {
	t.Helper()
	img, err := c.WithPause(mustBuild(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Push(t.Context(), img, "e2e/pause:1.0"); err != nil {
		t.Fatal(err)
	}
	return c.Registry + "/e2e/pause:1.0"
}

func mustBuild(t *testing.T) v1.Image {
	t.Helper()
	img, err := images.Build(images.Layer{"/etc/hostname": []byte("e2e\n")})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func runningPods(t *testing.T, namespace string) []corev1.Pod {
	t.Helper()
	pods := &corev1.PodList{}
	if err := k8s.List(t.Context(), pods, client.InNamespace(namespace)); err != nil {
		t.Fatal(err)
	}
	var running []corev1.Pod
	for _, pod := range pods.Items {
		if pod.Status.Phase == corev1.PodRunning {
			running = append(running, pod)
		}
	}
	return running
}

func containerOf(workload string) string {
	for _, s := range samples {
		if s.name == workload {
			return s.container
		}
	}
	return workload
}

func digestOf(ref string) string {
	return ref[strings.Index(ref, "@")+1:]
}

// imageScan is the ImageScan of digest (empty when there is none yet).
func imageScan(t *testing.T, digest string) *vigilv1alpha1.ImageScan {
	t.Helper()
	scans := &vigilv1alpha1.ImageScanList{}
	if err := k8s.List(t.Context(), scans); err != nil {
		t.Fatal(err)
	}
	for i := range scans.Items {
		if scans.Items[i].Spec.Digest == digest {
			return &scans.Items[i]
		}
	}
	return &vigilv1alpha1.ImageScan{}
}

// workloadsOf lists the workloads of a vulnerability as Kind/name.
func workloadsOf(t *testing.T, cve string) []string {
	t.Helper()
	vulnerability := &vigilv1alpha1.Vulnerability{}
	if err := k8s.Get(t.Context(), client.ObjectKey{Name: cve}, vulnerability); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		t.Fatal(err)
	}
	var workloads []string
	for _, w := range vulnerability.Status.Workloads {
		workloads = append(workloads, w.Kind+"/"+w.Name)
	}
	return workloads
}

// watchContainersStopped reports the time at which the kubelet reported the last running
// container of the pods matching selector stopped (terminated, or the pod gone).
func watchContainersStopped(t *testing.T, namespace, selector string) <-chan time.Time {
	t.Helper()
	stopped := make(chan time.Time, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			pods, err := c.Clientset.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				return
			}
			running := false
			for _, pod := range pods.Items {
				for _, status := range pod.Status.ContainerStatuses {
					if status.State.Running != nil {
						running = true
					}
				}
			}
			if !running {
				stopped <- time.Now()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return stopped
}

// recordMeasurement appends a measured figure to the suite's measurement file, for
// docs/benchmarks.md.
func recordMeasurement(t testing.TB, line string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(logDir, "measurements.txt"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Log(err)
		return
	}
	defer f.Close()
	fmt.Fprintln(f, time.Now().UTC().Format(time.RFC3339), line)
}
