package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v6distribution "github.com/anchore/grype/grype/db/v6/distribution"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/reconciler/imagescan"
	namespacesetup "github.com/vigil-dev/vigil/reconciler/namespace"
	"github.com/vigil-dev/vigil/test/fixtures/fixturedb"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
	"github.com/vigil-dev/vigil/test/testenv"
)

// world is what the scanning stories share: a registry with the fixture images and a server
// of the fixture vulnerability database in grype's distribution format.
type world struct {
	fixtures   map[string]func() (v1.Image, error)
	registry   *registry.Registry
	private    *registry.Registry
	dbServer   *httptest.Server
	dbDir      string
	listingURL string
	// builds stamps each published database a second after the one before: a newer database
	// without waiting for the clock.
	builds *fixturedb.BuildClock
}

var (
	worldOnce sync.Once
	shared    *world
	worldErr  error
)

const (
	privateUser     = "robot"
	privatePassword = "s3cret"
)

func theWorld(t *testing.T) *world {
	t.Helper()
	worldOnce.Do(func() {
		shared, worldErr = buildWorld()
	})
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	return shared
}

// closeTheWorld stops the shared world's registries and database server and removes its
// published databases, if a story built it.
func closeTheWorld() {
	if shared == nil {
		return
	}
	shared.dbServer.Close()
	shared.registry.Close()
	shared.private.Close()
	if err := os.RemoveAll(shared.dbDir); err != nil {
		fmt.Fprintf(os.Stderr, "Removing the published databases: %v\n", err)
	}
}

func buildWorld() (*world, error) {
	w := &world{
		fixtures: map[string]func() (v1.Image, error){
			"shop/api": images.JavaLog4j, "base/debian": images.DebianOpenSSL, "web/node": images.NodeMinimist, "tools/clean": images.Clean,
		},
		registry: registry.Start(registry.Options{}),
		private:  registry.Start(registry.Options{Username: privateUser, Password: privatePassword}),
		builds:   fixturedb.NewBuildClock(time.Now()),
	}
	img, err := images.PythonPyYAML()
	if err != nil {
		return nil, err
	}
	if _, err := w.private.Push(img, "private/py", "1.0"); err != nil {
		return nil, err
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vigil-dist-")
	if err != nil {
		return nil, err
	}
	w.dbDir = dir
	if err := w.publish(filepath.Join(root, "test", "fixtures", "advisories")); err != nil {
		return nil, err
	}
	w.dbServer = httptest.NewServer(http.FileServer(http.Dir(dir)))
	w.listingURL = w.dbServer.URL + "/" + v6distribution.LatestFileName
	return w, nil
}

// publish builds a database of the advisory sources and serves it.
func (w *world) publish(sources ...string) error {
	build, err := os.MkdirTemp("", "vigil-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(build)
	built, err := fixturedb.Build(build, w.builds.Next(), sources...)
	if err != nil {
		return err
	}
	_, err = built.Package(w.dbDir)
	return err
}

// runDeployment creates Deployment name in namespace with one container of the world's
// fixture image, and runs replicas of its pods as a kubelet would; it returns the image, its
// digest and the pods.
func (w *world) runDeployment(t *testing.T, namespace, name, fixture string, replicas int) (string, string, []*corev1.Pod) {
	t.Helper()
	image, imageID, digest := w.imageID(t, fixture)
	d := deployment(namespace, name, image)
	d.Spec.Template.Spec.InitContainers = nil
	if err := env.Client.Create(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	pods, err := testenv.RunDeployment(t.Context(), env.Client, d, replicas, map[string]string{image: imageID})
	if err != nil {
		t.Fatal(err)
	}
	return image, digest, pods
}

// imageID pushes the image of a fixture repository again under a repository of the story's own,
// with one more layer that makes its digest the story's own too (ImageScans and findings are
// cluster-wide, and stories share the control plane), and returns its reference, the imageID a
// container runtime reports for it, and its digest.
func (w *world) imageID(t *testing.T, fixture string) (image, imageID, digest string) {
	t.Helper()
	base, err := w.fixtures[fixture]()
	if err != nil {
		t.Fatal(err)
	}
	story := strings.ToLower(rand.String(8))
	unique, err := images.Append(base, images.Layer{"/etc/vigil-story": []byte(story)})
	if err != nil {
		t.Fatal(err)
	}
	repository := fixture + "-" + story
	if _, err := w.registry.Push(unique, repository, "1.4"); err != nil {
		t.Fatal(err)
	}
	image = w.registry.Host + "/" + repository + ":1.4"
	digest = w.registry.Digest(t, repository, "1.4")
	return image, w.registry.Host + "/" + repository + "@" + digest, digest
}

// repositoryOf is the repository of an image reference of the world's registry.
func (w *world) repositoryOf(image string) string {
	repository, _, _ := strings.Cut(strings.TrimPrefix(image, w.registry.Host+"/"), ":")
	return repository
}

// startScanningManager runs a manager that scans in process and updates its database from the
// world's listing every two seconds.
func startScanningManager(t *testing.T, w *world, extraArgs ...string) *managerProcess {
	t.Helper()
	args := append([]string{
		"--db-listing-url=" + w.listingURL, "--db-update-interval=2s", "--scan-retry-backoff=1s",
		"--scan-max-attempts=3", "--findings-refresh-interval=1h",
	}, extraArgs...)
	manager := startManager(t, args...)
	manager.waitReady(t)
	return manager
}

func scanOf(ctx context.Context, digest string) (*vigilv1alpha1.ImageScan, error) {
	scan := &vigilv1alpha1.ImageScan{}
	err := env.Client.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ImageScanName(digest)}, scan)
	return scan, err
}

// phaseOf polls the phase of the ImageScan of digest.
func phaseOf(ctx context.Context, digest string) func() (vigilv1alpha1.ImageScanPhase, error) {
	return func() (vigilv1alpha1.ImageScanPhase, error) {
		scan, err := scanOf(ctx, digest)
		return scan.Status.Phase, err
	}
}

func vulnerabilityOf(ctx context.Context, id string) (*vigilv1alpha1.Vulnerability, error) {
	vulnerability := &vigilv1alpha1.Vulnerability{}
	err := env.Client.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.VulnerabilityName(id)}, vulnerability)
	return vulnerability, err
}

func workloadNames(vulnerability *vigilv1alpha1.Vulnerability) []string {
	var names []string
	for _, w := range vulnerability.Status.Workloads {
		names = append(names, w.Namespace+"/"+w.Kind+"/"+w.Name+"/"+w.Container)
	}
	return names
}

func TestAVulnerableDeploymentIsScannedOnceAndReportedWhileItRuns(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	manager := startScanningManager(t, w)
	installWebhook(t, manager.webhookPort, manager.caPEM)
	shop := newNamespace(t, nil)

	image, digest, pods := w.runDeployment(t, shop, "api", "shop/api", 3)

	// One scan of the digest, however many pods and references use it.
	g.Eventually(phaseOf(ctx, digest), 60*time.Second, 250*time.Millisecond).Should(Equal(vigilv1alpha1.ImageScanScanned), func() string { return manager.logs() })
	scan, err := scanOf(ctx, digest)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(scan.Status.Attempts).To(Equal(int32(1)))
	g.Expect(scan.Status.SBOM.Packages).To(Equal(int32(1)))
	g.Expect(scan.Status.SeverityCounts.Critical).To(Equal(int32(1)))
	g.Expect(meta.IsStatusConditionTrue(scan.Status.Conditions, vigilv1alpha1.ConditionScanned)).To(BeTrue())
	pullsAfterScan := w.registry.Pulls(w.repositoryOf(image))

	// The vulnerability is reported with the Deployment as its workload.
	g.Eventually(func() ([]string, error) {
		vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44228")
		return workloadNames(vulnerability), err
	}, 30*time.Second, 250*time.Millisecond).Should(ConsistOf(shop + "/Deployment/api/c0"))
	vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44228")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(vulnerability.Status.Details.Aliases).To(ContainElement("GHSA-jfh8-c2jp-5v3q"))
	g.Expect(vulnerability.Status.Details.KnownExploited).To(BeTrue())
	g.Expect(vulnerability.Status.Details.Rank).To(Equal(int32(1900)), "Critical with a CVSS score of 10.0")
	g.Expect(vulnerability.Status.Details.Packages).To(ConsistOf(And(
		HaveField("Name", "log4j-core"), HaveField("Installed", "2.14.1"), HaveField("FixedIn", []string{"2.15.0"}))))
	g.Expect(vulnerability.Status.Images).To(ConsistOf(vigilv1alpha1.AffectedImage{Image: image, Digest: digest}))
	g.Expect(vulnerability.Labels).To(HaveKeyWithValue(vigilv1alpha1.SeverityLabel, "critical"))

	out, err := env.Kubectl(ctx, "get", "vulnerabilities", "cve-2021-44228")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(MatchRegexp(`cve-2021-44228\s+CVE-2021-44228\s+Critical\s+10\s+log4j-core 2.14.1\s+2.15.0\s+true\s+1`))

	// In steady state nothing is written and nothing scanned again: a pod of the Deployment
	// changes (an annotation) and the manager looks at it again, then a Deployment of another
	// image runs and is reported, which the manager does after it.
	before := vulnerability.ResourceVersion
	scanBefore := scan.ResourceVersion
	touched := pods[0].DeepCopy()
	touched.Annotations = map[string]string{"example.com/touched": "true"}
	g.Expect(env.Client.Patch(ctx, touched, client.MergeFrom(pods[0]))).To(Succeed())
	runMarker(t, w, shop)
	v, err := vulnerabilityOf(ctx, "CVE-2021-44228")
	g.Expect(err).NotTo(HaveOccurred())
	scan, err = scanOf(ctx, digest)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(v.ResourceVersion+"/"+scan.ResourceVersion).To(Equal(before+"/"+scanBefore), "written in steady state")
	g.Expect(w.registry.Pulls(w.repositoryOf(image))).To(Equal(pullsAfterScan))

	// Scaled to zero: the finding is gone.
	g.Expect(testenv.StopPods(ctx, env.Client, pods...)).To(Succeed())
	g.Eventually(func() bool {
		_, err := vulnerabilityOf(ctx, "CVE-2021-44228")
		return apierrors.IsNotFound(err)
	}, 10*time.Second, 100*time.Millisecond).Should(BeTrue())
}

func TestAnImageScanDeletedByHandComesBackWhileItsPodsRun(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	manager := startScanningManager(t, w)
	shop := newNamespace(t, nil)

	_, digest, _ := w.runDeployment(t, shop, "api", "shop/api", 2)
	g.Eventually(phaseOf(ctx, digest), 60*time.Second, 250*time.Millisecond).Should(Equal(vigilv1alpha1.ImageScanScanned), func() string { return manager.logs() })
	deleted, err := scanOf(ctx, digest)
	g.Expect(err).NotTo(HaveOccurred())

	// The administrator deletes the ImageScan to have the image scanned again; the manager is
	// not restarted, and no pod changes.
	_, err = env.Kubectl(ctx, "delete", "imagescan", deleted.Name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() (bool, error) {
		scan, err := scanOf(ctx, digest)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return scan.UID != deleted.UID && scan.Status.Phase == vigilv1alpha1.ImageScanScanned, err
	}, 30*time.Second, 250*time.Millisecond).Should(BeTrue(), func() string { return manager.logs() })
	g.Eventually(func() ([]string, error) {
		vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44228")
		return workloadNames(vulnerability), err
	}, 30*time.Second, 250*time.Millisecond).Should(ConsistOf(shop + "/Deployment/api/c0"))
}

func TestTwoDeploymentsShareAnImage(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	startScanningManager(t, w)
	shop := newNamespace(t, nil)
	jobs := newNamespace(t, nil)

	image, imageID, digest := w.imageID(t, "web/node")
	front := deployment(shop, "front", image)
	back := deployment(jobs, "back", image)
	var frontPods []*corev1.Pod
	for _, d := range []*appsv1.Deployment{front, back} {
		d.Spec.Template.Spec.InitContainers = nil
		g.Expect(env.Client.Create(ctx, d)).To(Succeed())
		pods, err := testenv.RunDeployment(ctx, env.Client, d, 2, map[string]string{image: imageID})
		g.Expect(err).NotTo(HaveOccurred())
		if d == front {
			frontPods = pods
		}
	}
	g.Eventually(func() ([]string, error) {
		vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44906")
		return workloadNames(vulnerability), err
	}, 60*time.Second, 250*time.Millisecond).Should(ConsistOf(shop+"/Deployment/front/c0", jobs+"/Deployment/back/c0"))
	scan, err := scanOf(ctx, digest)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(scan.Status.Attempts).To(Equal(int32(1)), "one scan for two Deployments")

	g.Expect(env.Client.Delete(ctx, front)).To(Succeed())
	g.Expect(testenv.StopPods(ctx, env.Client, frontPods...)).To(Succeed())
	g.Eventually(func() ([]string, error) {
		vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44906")
		return workloadNames(vulnerability), err
	}, 10*time.Second, 100*time.Millisecond).Should(ConsistOf(jobs + "/Deployment/back/c0"))
}

func TestACronJobIsScannedBeforeAnyJobRuns(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	manager := startScanningManager(t, w)
	installWebhook(t, manager.webhookPort, manager.caPEM)
	reports := newNamespace(t, nil)

	image, _, digest := w.imageID(t, "base/debian")
	g.Expect(env.Client.Create(ctx, cronJob(reports, "nightly", image))).To(Succeed())

	g.Eventually(phaseOf(ctx, digest), 60*time.Second, 250*time.Millisecond).Should(Equal(vigilv1alpha1.ImageScanScanned), func() string { return manager.logs() })
	scan, err := scanOf(ctx, digest)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(scan.Spec.References).To(ContainElement(HaveField("Namespace", reports)))
	// The reference's own record was resolved and removed.
	g.Eventually(func() bool {
		_, err := referenceScan(ctx, image)
		return apierrors.IsNotFound(err)
	}, 10*time.Second, 200*time.Millisecond).Should(BeTrue())
	// Nothing runs it yet, so nothing is reported: a pod of another image that runs after the
	// scan ended is reported, so the findings have seen the scan's result by then.
	runMarker(t, w, reports)
	_, err = vulnerabilityOf(ctx, "CVE-2023-0286")
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "a CronJob that runs no Job is reported: %v", err)
}

// runMarker runs a pod of a new image with CVE-2021-44906 in namespace, and waits until the
// manager has scanned it and reported the pod. A story that checks that the manager did nothing
// (wrote nothing, pulled nothing, reported nothing) checks it after this, so that it checks what
// the manager did with every event before the marker rather than what it did within a window.
func runMarker(t *testing.T, w *world, namespace string) {
	t.Helper()
	g := NewWithT(t)
	ctx := t.Context()
	image, imageID, _ := w.imageID(t, "web/node")
	name := "marker-" + strings.ToLower(rand.String(5))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	g.Expect(testenv.RunPod(ctx, env.Client, pod, map[string]string{image: imageID})).To(Succeed())
	g.Eventually(func() ([]string, error) {
		vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44906")
		return workloadNames(vulnerability), err
	}, 60*time.Second, 250*time.Millisecond).Should(ContainElement(namespace + "/Pod/" + name + "/app"))
}

func TestThePodWatchLeavesANamespaceThatOptsOutAlone(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	startScanningManager(t, w) // no webhook: the pod watch is what sees the pods
	optedOut := newNamespace(t, map[string]string{vigilv1alpha1.ScanningLabel: vigilv1alpha1.ScanningDisabled})

	image, imageID, digest := w.imageID(t, "shop/api")
	requests := w.registry.Requests(w.repositoryOf(image))
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: optedOut, Name: "private"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	g.Expect(testenv.RunPod(ctx, env.Client, pod, map[string]string{image: imageID})).To(Succeed())

	// A pod that runs after it in an observed namespace is scanned and reported; by then the
	// opted-out pod was seen and left alone: not recorded, not pulled, not reported.
	runMarker(t, w, newNamespace(t, nil))
	g.Expect(w.registry.Requests(w.repositoryOf(image))).To(Equal(requests), "the registry was asked for the opted-out namespace's image")
	_, err := scanOf(ctx, digest)
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the opted-out namespace's image was recorded: %v", err)
	_, err = vulnerabilityOf(ctx, "CVE-2021-44228")
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the opted-out namespace's pod was reported: %v", err)
}

func TestAPrivateImageIsScannedWithItsPullSecretAndFailsWithoutOne(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	manager := startScanningManager(t, w)
	installWebhook(t, manager.webhookPort, manager.caPEM)
	image := w.private.Host + "/private/py:1.0"

	withSecret := newNamespace(t, nil)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: withSecret, Name: "registry-credentials"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: w.private.DockerConfig(privateUser, privatePassword)},
	}
	g.Expect(env.Client.Create(ctx, secret)).To(Succeed())
	api := deployment(withSecret, "py", image) // its pod template names registry-credentials
	api.Spec.Template.Spec.InitContainers = nil
	g.Expect(env.Client.Create(ctx, api)).To(Succeed())

	digest := w.private.Digest(t, "private/py", "1.0")
	g.Eventually(phaseOf(ctx, digest), 60*time.Second, 250*time.Millisecond).Should(Equal(vigilv1alpha1.ImageScanScanned), func() string { return manager.logs() })

	// The same image in a namespace without credentials: its reference fails to resolve.
	otherImage := w.private.Host + "/private/py:1.0-nocreds"
	g.Expect(w.private.Tag("private/py", "1.0", "1.0-nocreds")).To(Succeed())
	without := newNamespace(t, nil)
	bare := deployment(without, "py", otherImage)
	bare.Spec.Template.Spec.InitContainers = nil
	bare.Spec.Template.Spec.ImagePullSecrets = nil
	g.Expect(env.Client.Create(ctx, bare)).To(Succeed())
	g.Eventually(func() (string, error) {
		scan, err := referenceScan(ctx, otherImage)
		condition := meta.FindStatusCondition(scan.Status.Conditions, vigilv1alpha1.ConditionResolved)
		if condition == nil {
			return "", err
		}
		return string(scan.Status.Phase) + "/" + condition.Reason, err
	}, 60*time.Second, 250*time.Millisecond).Should(Equal("Failed/" + imagescan.ReasonAuthenticationFailed))
}

func TestTheManagerKilledMidScanFinishesTheScanAfterARestart(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	sbomDir := filepath.Join(t.TempDir(), "sboms")
	dbDir := filepath.Join(t.TempDir(), "db")
	w.registry.SetBlobDelay(3 * time.Second)
	defer w.registry.SetBlobDelay(0)
	manager := startScanningManager(t, w, "--sbom-dir="+sbomDir, "--db-dir="+dbDir)
	shop := newNamespace(t, nil)

	image, imageID, digest := w.imageID(t, "tools/clean")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "clean"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	g.Expect(testenv.RunPod(ctx, env.Client, pod, map[string]string{image: imageID})).To(Succeed())
	g.Eventually(phaseOf(ctx, digest), 30*time.Second, 100*time.Millisecond).Should(Equal(vigilv1alpha1.ImageScanScanning))

	g.Expect(manager.cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
	g.Eventually(manager.exited, 10*time.Second).Should(BeClosed())
	w.registry.SetBlobDelay(0)

	restarted := startScanningManager(t, w, "--sbom-dir="+sbomDir, "--db-dir="+dbDir)
	g.Eventually(phaseOf(ctx, digest), 60*time.Second, 250*time.Millisecond).Should(Equal(vigilv1alpha1.ImageScanScanned), func() string { return restarted.logs() })

	// Restarted again with its store intact, the manager scans nothing again.
	pulls := w.registry.Pulls(w.repositoryOf(image))
	g.Expect(restarted.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	g.Eventually(restarted.exited, 40*time.Second).Should(BeClosed())
	again := startScanningManager(t, w, "--sbom-dir="+sbomDir, "--db-dir="+dbDir)
	// It reads every ImageScan when it starts, before it sees the marker's pod.
	runMarker(t, w, shop)
	g.Expect(w.registry.Pulls(w.repositoryOf(image))).To(Equal(pulls), again.logs())
	scan, err := scanOf(ctx, digest)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(scan.Status.Phase).To(Equal(vigilv1alpha1.ImageScanScanned), again.logs())
}

func TestANewDatabaseIsMatchedWithoutPullingImages(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	manager := startScanningManager(t, w)
	shop := newNamespace(t, nil)

	image, digest, _ := w.runDeployment(t, shop, "db", "base/debian", 1)
	g.Eventually(func() error {
		_, err := vulnerabilityOf(ctx, "CVE-2023-0286")
		return err
	}, 60*time.Second, 250*time.Millisecond).Should(Succeed(), func() string { return manager.logs() })
	_, err := vulnerabilityOf(ctx, "CVE-2023-4911")
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
	pulls := w.registry.Pulls(w.repositoryOf(image))
	scan, err := scanOf(ctx, digest)
	g.Expect(err).NotTo(HaveOccurred())
	firstBuilt := scan.Status.Database.Built

	// A new database adds CVE-2023-4911 (glibc); the stored SBOM is matched again.
	root, err := testenv.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.publish(filepath.Join(root, "test", "fixtures", "advisories"), filepath.Join(root, "test", "fixtures", "advisories-update"))).To(Succeed())
	g.Eventually(func() ([]string, error) {
		vulnerability, err := vulnerabilityOf(ctx, "CVE-2023-4911")
		return workloadNames(vulnerability), err
	}, 60*time.Second, 250*time.Millisecond).Should(ConsistOf(shop + "/Deployment/db/c0"))
	g.Expect(scanOf(ctx, digest)).To(HaveField("Status.Database.Built", Not(Equal(firstBuilt))))
	g.Expect(w.registry.Pulls(w.repositoryOf(image))).To(Equal(pulls), "no image was pulled again")

	// The advisory is withdrawn again: the finding disappears.
	g.Expect(w.publish(filepath.Join(root, "test", "fixtures", "advisories"))).To(Succeed())
	g.Eventually(func() bool {
		_, err := vulnerabilityOf(ctx, "CVE-2023-4911")
		return apierrors.IsNotFound(err)
	}, 60*time.Second, 250*time.Millisecond).Should(BeTrue())
	g.Expect(w.registry.Pulls(w.repositoryOf(image))).To(Equal(pulls))
}

func TestNamespacesGetTheirScanningRBAC(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	root, err := testenv.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(testenv.InstallCRDs(env, filepath.Join(root, "test", "fixtures", "openshift"))).To(Succeed())
	w := theWorld(t)
	startScanningManager(t, w)

	roleBinding := func(namespace string) (*rbacv1.RoleBinding, error) {
		binding := &rbacv1.RoleBinding{}
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: namespacesetup.RoleBindingName}, binding)
		return binding, err
	}

	// A namespace created after installation is set up within seconds.
	created := newNamespace(t, nil)
	g.Eventually(func() error { _, err := roleBinding(created); return err }, 10*time.Second, 100*time.Millisecond).Should(Succeed())
	binding, err := roleBinding(created)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(binding.RoleRef).To(Equal(rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "vigil-pull-secret-reader"}))
	g.Expect(binding.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Namespace: "vigil-system", Name: "vigil"}))

	// A deleted RoleBinding comes back.
	g.Expect(env.Client.Delete(ctx, binding)).To(Succeed())
	g.Eventually(func() (types.UID, error) {
		b, err := roleBinding(created)
		return b.UID, err
	}, 10*time.Second, 100*time.Millisecond).ShouldNot(Equal(binding.UID))

	// A new OpenShift project is set up too.
	project := openShiftProject("proj-" + rand.String(5))
	g.Expect(env.Client.Create(ctx, project)).To(Succeed())
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: project.GetName()}})).To(Succeed())
	g.Eventually(func() error { _, err := roleBinding(project.GetName()); return err }, 10*time.Second, 100*time.Millisecond).Should(Succeed())

	// A namespace that opts out loses it.
	ns := &corev1.Namespace{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: created}, ns)).To(Succeed())
	ns.Labels[vigilv1alpha1.ScanningLabel] = vigilv1alpha1.ScanningDisabled
	g.Expect(env.Client.Update(ctx, ns)).To(Succeed())
	g.Eventually(func() bool { _, err := roleBinding(created); return apierrors.IsNotFound(err) }, 10*time.Second, 100*time.Millisecond).Should(BeTrue())
	// Vigil's own namespace has none.
	_, err = roleBinding("vigil-system")
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
}

// openShiftProject is an OpenShift Project, as `oc new-project` creates it.
func openShiftProject(name string) *unstructured.Unstructured {
	project := &unstructured.Unstructured{}
	project.SetGroupVersionKind(namespacesetup.ProjectGVK)
	project.SetName(name)
	return project
}
