package integration

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/reconciler/imagescan"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/testenv"
)

// TestABogusPullSecretInOneNamespaceCannotFailAnotherNamespacesScan plays two tenants that run
// the same private image: one with a pull secret the registry refuses, the other with a good one.
// Each reference is pulled with its own namespace's credentials only, every reference is tried,
// and the image is Failed only while no reference can be pulled. Both executors are played.
func TestABogusPullSecretInOneNamespaceCannotFailAnotherNamespacesScan(t *testing.T) {
	for _, executorKind := range []string{"in-process", "job"} {
		t.Run(executorKind, func(t *testing.T) {
			isolate(t)
			g := NewWithT(t)
			ctx := t.Context()
			w := theWorld(t)
			var manager *managerProcess
			if executorKind == "job" {
				manager = startJobScanningManager(t, w)
			} else {
				manager = startScanningManager(t, w)
			}

			// A private image of the story's own, so that its ImageScan is the story's too.
			base, err := images.PythonPyYAML()
			g.Expect(err).NotTo(HaveOccurred())
			story := strings.ToLower(rand.String(8))
			unique, err := images.Append(base, images.Layer{"/etc/vigil-story": []byte(story)})
			g.Expect(err).NotTo(HaveOccurred())
			repository := "private/shared-" + story
			_, err = w.private.Push(unique, repository, "1.0")
			g.Expect(err).NotTo(HaveOccurred())
			digest := w.private.Digest(t, repository, "1.0")
			image := w.private.Host + "/" + repository + ":1.0"
			imageIDs := map[string]string{image: w.private.Host + "/" + repository + "@" + digest}

			runWithSecret := func(namespace, password string) {
				t.Helper()
				g.Expect(env.Client.Create(ctx, &corev1.Secret{
					ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "registry-credentials"},
					Type:       corev1.SecretTypeDockerConfigJson,
					Data:       map[string][]byte{corev1.DockerConfigJsonKey: w.private.DockerConfig(privateUser, password)},
				})).To(Succeed())
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "app"},
					Spec: corev1.PodSpec{
						Containers:       []corev1.Container{{Name: "app", Image: image}},
						ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry-credentials"}},
					},
				}
				g.Expect(testenv.RunPod(ctx, env.Client, pod, imageIDs)).To(Succeed())
			}
			scanned := func() (string, error) {
				scan, err := scanOf(ctx, digest)
				reason := ""
				if condition := meta.FindStatusCondition(scan.Status.Conditions, vigilv1alpha1.ConditionScanned); condition != nil {
					reason = condition.Reason
				}
				return string(scan.Status.Phase) + "/" + reason, err
			}

			// The first tenant's secret is refused: no reference can be pulled, the image fails.
			bogus := newNamespace(t, nil)
			runWithSecret(bogus, "not-the-password")
			g.Eventually(scanned, 60*time.Second, 250*time.Millisecond).Should(
				Equal(string(vigilv1alpha1.ImageScanFailed)+"/"+imagescan.ReasonAuthenticationFailed), func() string { return manager.logs() })

			// The second tenant's secret is good: the same digest is scanned, its bogus reference
			// first in the list and tried first.
			good := newNamespace(t, nil)
			runWithSecret(good, privatePassword)
			g.Eventually(scanned, 90*time.Second, 250*time.Millisecond).Should(
				Equal(string(vigilv1alpha1.ImageScanScanned)+"/"+imagescan.ReasonMatched), func() string { return manager.logs() })
			scan, err := scanOf(ctx, digest)
			g.Expect(err).NotTo(HaveOccurred())
			var namespaces []string
			for _, reference := range scan.Spec.References {
				namespaces = append(namespaces, reference.Namespace)
			}
			g.Expect(namespaces).To(Equal([]string{bogus, good}))
			// The failed attempt was the first; the second, in a new series, tried both references.
			g.Expect(scan.Status.Attempts).To(Equal(int32(2)))
			g.Expect(scan.Status.FirstAttempt).To(Equal(int32(2)), "one attempt of the new series tried both references")
			g.Expect(meta.IsStatusConditionTrue(scan.Status.Conditions, vigilv1alpha1.ConditionScanned)).To(BeTrue())
		})
	}
}

// startJobScanningManager runs a manager that scans with the Job executor, and the scan Jobs'
// commands as local processes, until the test ends.
func startJobScanningManager(t *testing.T, w *world) *managerProcess {
	t.Helper()
	ensure(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vigil-system"}})
	ensure(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: "vigil-scanner"}})
	manager := startScanningManager(t, w, "--scan-executor=job", "--scanner-image=registry.example/vigil:test")
	scanner, err := testenv.BuildBinary("./cmd/vigil-scanner")
	if err != nil {
		t.Fatal(err)
	}
	runner := &testenv.JobRunner{
		Env: env, Namespace: "vigil-system", Binary: scanner,
		Secrets: map[string]map[string][]byte{"vigil-webhook-tls": {"ca.crt": manager.caPEM}},
		Rewrite: map[string]string{"vigil-webhook.vigil-system.svc:443": fmt.Sprintf("127.0.0.1:%d", manager.webhookPort)},
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runner.Run(ctx)
	}()
	t.Cleanup(func() {
		stop()
		<-done
		if t.Failed() {
			t.Logf("scan Jobs: %v", runner.Logs)
		}
	})
	return manager
}

// TestARegistryThatNeverAnswersHoldsUpNoOtherImage plays a tenant whose pods name images on a
// registry that accepts connections and never answers: resolving each of its references waits
// for the whole registry timeout. Another tenant's image is scanned all the while.
func TestARegistryThatNeverAnswersHoldsUpNoOtherImage(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	silent := silentRegistry(t)
	manager := startScanningManager(t, w, "--registry-timeout=5m")

	stuck := newNamespace(t, nil)
	var stuckImages []string
	for i := range 8 {
		image := fmt.Sprintf("%s/stuck/app-%d:1", silent, i)
		stuckImages = append(stuckImages, image)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: stuck, Name: fmt.Sprintf("app-%d", i)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		}
		// No image ID: the kubelet has not pulled it, so its reference is resolved.
		g.Expect(testenv.RunPod(ctx, env.Client, pod, nil)).To(Succeed())
	}
	for _, image := range stuckImages {
		g.Eventually(func() error { _, err := referenceScan(ctx, image); return err }, 30*time.Second, 100*time.Millisecond).Should(Succeed())
	}

	shop := newNamespace(t, nil)
	image, imageID, digest := w.imageID(t, "web/node")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: shop, Name: "front"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
	}
	g.Expect(testenv.RunPod(ctx, env.Client, pod, map[string]string{image: imageID})).To(Succeed())
	g.Eventually(phaseOf(ctx, digest), 60*time.Second, 250*time.Millisecond).Should(Equal(vigilv1alpha1.ImageScanScanned), func() string { return manager.logs() })

	// The stuck references are still being resolved, not failed.
	for _, image := range stuckImages {
		scan, err := referenceScan(ctx, image)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(scan.Status.Phase).NotTo(Equal(vigilv1alpha1.ImageScanFailed))
	}
}

// silentRegistry listens on loopback, accepts connections and never answers, until the test
// ends; it returns its host:port.
func silentRegistry(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = listener.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range held {
			_ = conn.Close()
		}
	})
	return listener.Addr().String()
}
