package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/test/testenv"
)

// installWebhook installs the generated webhook configuration, pointed at 127.0.0.1:port and
// trusting caPEM, for the test's duration.
func installWebhook(t *testing.T, port int, caPEM []byte) *admissionregistrationv1.ValidatingWebhookConfiguration {
	t.Helper()
	config, err := env.InstallWebhook(t.Context(), "vigil-test-"+rand.String(5), port, caPEM)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), config) })
	return config
}

// newNamespace creates a namespace with the given labels for one test.
func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "story-", Labels: labels}}
	NewWithT(t).Expect(env.Client.Create(t.Context(), namespace)).To(Succeed())
	// This control plane runs no namespace controller: a story's pods are removed at its end, so
	// that they do not run on into the next story.
	t.Cleanup(func() {
		_ = env.Client.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(namespace.Name), client.GracePeriodSeconds(0))
	})
	return namespace.Name
}

// referenceScan reads the ImageScan that records an image reference.
func referenceScan(ctx context.Context, image string) (*vigilv1alpha1.ImageScan, error) {
	scan := &vigilv1alpha1.ImageScan{}
	err := env.Client.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ReferenceScanName(image)}, scan)
	return scan, err
}

func deployment(namespace, name string, images ...string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	var containers []corev1.Container
	for i, image := range images {
		containers = append(containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: image})
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: "api",
					ImagePullSecrets:   []corev1.LocalObjectReference{{Name: "registry-credentials"}},
					InitContainers:     []corev1.Container{{Name: "migrate", Image: "registry.example/shop/migrate:" + name}},
					Containers:         containers,
				},
			},
		},
	}
}

// cronJob is a nightly CronJob of one container running image.
func cronJob(namespace, name, image string) *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: batchv1.CronJobSpec{
			Schedule: "0 3 * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyOnFailure,
				Containers:    []corev1.Container{{Name: "run", Image: image}},
			}}}},
		},
	}
}

func TestAdmittedWorkloadImagesAreRecordedBeforeAnyPodExists(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	manager := startManager(t)
	manager.waitReady(t)
	installWebhook(t, manager.webhookPort, manager.caPEM)
	namespace := newNamespace(t, nil)

	// A Deployment is admitted: its images are recorded, with the namespace and the credentials
	// that pull them, while no Pod exists (this control plane runs no controllers).
	tag := rand.String(6)
	appImage := "registry.example/shop/api:" + tag
	pinnedDigest := "sha256:" + strings.Repeat("ab", 32)
	pinned := "registry.example/mesh/proxy@" + pinnedDigest
	g.Expect(env.Client.Create(ctx, deployment(namespace, tag, appImage, pinned))).To(Succeed())

	g.Eventually(func() ([]vigilv1alpha1.ImageReference, error) {
		scan, err := referenceScan(ctx, appImage)
		return scan.Spec.References, err
	}, 10*time.Second, 100*time.Millisecond).Should(ConsistOf(vigilv1alpha1.ImageReference{
		Image: appImage, Namespace: namespace, Workload: &vigilv1alpha1.WorkloadReference{Kind: "Deployment", Name: tag},
	}))
	g.Eventually(func() error {
		_, err := referenceScan(ctx, "registry.example/shop/migrate:"+tag)
		return err
	}, 10*time.Second, 100*time.Millisecond).Should(Succeed(), "the init container's image is recorded")
	// A reference that pins a digest is recorded on its digest's ImageScan at once.
	pinnedScan := &vigilv1alpha1.ImageScan{}
	g.Eventually(func() error {
		return env.Client.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ImageScanName(pinnedDigest)}, pinnedScan)
	}, 10*time.Second, 100*time.Millisecond).Should(Succeed())
	g.Expect(pinnedScan.Spec.Digest).To(Equal(pinnedDigest))

	pods := &corev1.PodList{}
	g.Expect(env.Client.List(ctx, pods, client.InNamespace(namespace))).To(Succeed())
	g.Expect(pods.Items).To(BeEmpty())

	// A CronJob's image is recorded before any Job runs.
	cronImage := "registry.example/jobs/report:" + tag
	g.Expect(env.Client.Create(ctx, cronJob(namespace, "report", cronImage))).To(Succeed())
	g.Eventually(func() error {
		_, err := referenceScan(ctx, cronImage)
		return err
	}, 10*time.Second, 100*time.Millisecond).Should(Succeed())

	// The same image in a second namespace adds a reference with that namespace's credentials.
	other := newNamespace(t, nil)
	g.Expect(env.Client.Create(ctx, deployment(other, tag, appImage))).To(Succeed())
	g.Eventually(func() ([]string, error) {
		scan, err := referenceScan(ctx, appImage)
		var namespaces []string
		for _, reference := range scan.Spec.References {
			namespaces = append(namespaces, reference.Namespace)
		}
		return namespaces, err
	}, 10*time.Second, 100*time.Millisecond).Should(ConsistOf(namespace, other))

	// A namespace that opts out is not observed. A Deployment admitted after it in an observed
	// namespace is recorded; records are written in the order they were admitted, so by then the
	// opted-out one would have been too.
	optedOut := newNamespace(t, map[string]string{vigilv1alpha1.ScanningLabel: vigilv1alpha1.ScanningDisabled})
	hiddenImage := "registry.example/private/hidden:" + tag
	g.Expect(env.Client.Create(ctx, deployment(optedOut, tag, hiddenImage))).To(Succeed())
	afterImage := "registry.example/shop/after-hidden:" + tag
	g.Expect(env.Client.Create(ctx, deployment(namespace, "after-"+tag, afterImage))).To(Succeed())
	g.Eventually(func() error {
		_, err := referenceScan(ctx, afterImage)
		return err
	}, 10*time.Second, 100*time.Millisecond).Should(Succeed())
	_, err := referenceScan(ctx, hiddenImage)
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the opted-out namespace's image was recorded: %v", err)
}

func TestDryRunAdmissionRecordsNothing(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	manager := startManager(t)
	manager.waitReady(t)
	installWebhook(t, manager.webhookPort, manager.caPEM)
	namespace := newNamespace(t, nil)

	tag := rand.String(6)
	dryImage := "registry.example/shop/dry:" + tag
	g.Expect(env.Client.Create(ctx, deployment(namespace, "dry", dryImage), client.DryRunAll)).To(Succeed())
	// The same kind of request without dry run is recorded, so silence means the dry run was skipped.
	realImage := "registry.example/shop/real:" + tag
	g.Expect(env.Client.Create(ctx, deployment(namespace, "real", realImage))).To(Succeed())
	g.Eventually(func() error {
		_, err := referenceScan(ctx, realImage)
		return err
	}, 10*time.Second, 100*time.Millisecond).Should(Succeed())
	_, err := referenceScan(ctx, dryImage)
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "the dry-run image was recorded: %v", err)
}

func TestPodsAreAdmittedWithoutTheWebhookAndRecordedByThePodWatch(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	// The webhook is registered but nothing serves it.
	deadPort, err := testenv.FreePort()
	g.Expect(err).NotTo(HaveOccurred())
	caPEM, err := testenv.WriteServingCertificate(t.TempDir(), "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	installWebhook(t, deadPort, caPEM)
	namespace := newNamespace(t, nil)

	image := "registry.example/shop/unobserved:" + rand.String(6)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "unobserved"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	g.Expect(env.Client.Create(ctx, pod)).To(Succeed(), "failurePolicy Ignore admits the pod")
	_, err = referenceScan(ctx, image)
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue())

	// Once a manager runs, its pod watch records the image.
	manager := startManager(t)
	manager.waitReady(t)
	g.Eventually(func() ([]vigilv1alpha1.ImageReference, error) {
		scan, err := referenceScan(ctx, image)
		return scan.Spec.References, err
	}, 30*time.Second, 200*time.Millisecond).Should(ConsistOf(HaveField("Namespace", namespace)))
}

func TestWebhookCertificateRotation(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	manager := startManager(t)
	manager.waitReady(t)
	config := installWebhook(t, manager.webhookPort, manager.caPEM)
	namespace := newNamespace(t, nil)

	// servedBy tells whether the webhook server's certificate is signed by caPEM.
	servedBy := func(caPEM []byte) error {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", manager.webhookPort), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		if err != nil {
			return err
		}
		return conn.Close()
	}
	g.Expect(servedBy(manager.caPEM)).To(Succeed())

	// cert-manager renews the certificate: new files in the certificate folder, a new CA bundle.
	newCA, err := testenv.WriteServingCertificate(manager.certDir, "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() error { return servedBy(newCA) }, 30*time.Second, 250*time.Millisecond).Should(Succeed(),
		"the webhook server serves the new certificate without a restart")
	g.Expect(servedBy(manager.caPEM)).NotTo(Succeed())
	g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(config), config)).To(Succeed())
	for i := range config.Webhooks {
		config.Webhooks[i].ClientConfig.CABundle = newCA
	}
	g.Expect(env.Client.Update(ctx, config)).To(Succeed())

	// The API server picks the new CA bundle up from its watch of webhook configurations a moment
	// later: until then its calls fail TLS and, with failurePolicy Ignore, admit unobserved. Each
	// attempt admits a Deployment of its own image, until one of them is recorded.
	var admitted []string
	g.Eventually(func() error {
		for _, image := range admitted {
			if _, err := referenceScan(ctx, image); err == nil {
				return nil
			}
		}
		tag := rand.String(6)
		image := "registry.example/shop/rotated:" + tag
		if err := env.Client.Create(ctx, deployment(namespace, "rotated-"+tag, image)); err != nil {
			return err
		}
		admitted = append(admitted, image)
		return fmt.Errorf("none of %d admitted images is recorded yet", len(admitted))
	}, 30*time.Second, 500*time.Millisecond).Should(Succeed())
	g.Expect(manager.cmd.ProcessState).To(BeNil(), "the manager kept running")
}
