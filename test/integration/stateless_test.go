package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/test/testenv"
)

// deletions watches the Vulnerability of id and counts its deletions until the test ends.
func deletions(t *testing.T, id string) func() int {
	t.Helper()
	watching, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	watcher, err := watching.Watch(t.Context(), &vigilv1alpha1.VulnerabilityList{},
		client.MatchingFields{"metadata.name": vigilv1alpha1.VulnerabilityName(id)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	deleted := 0
	go func() {
		for e := range watcher.ResultChan() {
			if e.Type == watch.Deleted {
				mu.Lock()
				deleted++
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(watcher.Stop)
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return deleted
	}
}

func TestARestartWithoutTheSBOMStoreKeepsEveryFinding(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	dbDir := filepath.Join(t.TempDir(), "db")
	manager := startScanningManager(t, w, "--db-dir="+dbDir)
	shop := newNamespace(t, nil)

	image, digest, _ := w.runDeployment(t, shop, "api", "shop/api", 1)
	g.Eventually(func() ([]string, error) {
		vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44228")
		return workloadNames(vulnerability), err
	}, 60*time.Second, 250*time.Millisecond).Should(ContainElement(shop+"/Deployment/api/c0"), func() string { return manager.logs() })
	deleted := deletions(t, "CVE-2021-44228")
	pulls := w.registry.Pulls(w.repositoryOf(image))

	// The manager dies, and its volume with it: the new one starts with an empty SBOM store.
	g.Expect(manager.cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
	g.Eventually(manager.exited, 10*time.Second).Should(BeClosed())
	restarted := startScanningManager(t, w, "--db-dir="+dbDir)

	// Its findings stay, and nothing is pulled again while the database is the same: checked once
	// it has reported a pod that runs after it started, so after it read every ImageScan and
	// Vulnerability it found at its start.
	runMarker(t, w, shop)
	vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44228")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(workloadNames(vulnerability)).To(ContainElement(shop + "/Deployment/api/c0"))
	g.Expect(deleted()).To(BeZero(), "the Vulnerability was deleted by the restart")
	g.Expect(w.registry.Pulls(w.repositoryOf(image))).To(Equal(pulls), restarted.logs())
	scan, err := scanOf(ctx, digest)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(scan.Status.Phase).To(Equal(vigilv1alpha1.ImageScanScanned))

	// A new database needs the SBOM: the image is scanned again in the background, and its
	// findings stay meanwhile.
	firstBuilt := scan.Status.Database.Built
	root, err := testenv.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(w.publish(filepath.Join(root, "test", "fixtures", "advisories"))).To(Succeed())
	g.Eventually(func() (bool, error) {
		scan, err := scanOf(ctx, digest)
		return err == nil && scan.Status.Phase == vigilv1alpha1.ImageScanScanned && !scan.Status.Database.Built.Equal(&firstBuilt), err
	}, 60*time.Second, 250*time.Millisecond).Should(BeTrue(), func() string { return restarted.logs() })
	g.Expect(w.registry.Pulls(w.repositoryOf(image))).To(BeNumerically(">", pulls), "the image was scanned again")
	g.Expect(deleted()).To(BeZero(), "the Vulnerability was deleted while the image was scanned again")
	_, err = vulnerabilityOf(ctx, "CVE-2021-44228")
	g.Expect(err).NotTo(HaveOccurred())
}

// leaderOf is the manager that holds the leader election Lease, by its logs.
func leaderOf(managers []*managerProcess) *managerProcess {
	for _, m := range managers {
		select {
		case <-m.exited:
			continue
		default:
		}
		for _, line := range m.logLines() {
			if strings.Contains(strings.ToLower(line), "successfully acquired lease") {
				return m
			}
		}
	}
	return nil
}

// haImages is the number of new images of the replica stories: VIGIL_HA_IMAGES, else 16.
func haImages() int {
	if n, err := strconv.Atoi(os.Getenv("VIGIL_HA_IMAGES")); err == nil && n > 0 {
		return n
	}
	return 16
}

// unscanned says where each digest that is not Scanned stands, with the output of its scan Jobs,
// for a story that waited in vain.
func unscanned(ctx context.Context, digests []string, runner *testenv.JobRunner) string {
	var b strings.Builder
	for _, digest := range digests {
		scan, err := scanOf(ctx, digest)
		if err != nil || scan.Status.Phase == vigilv1alpha1.ImageScanScanned {
			continue
		}
		fmt.Fprintf(&b, "%s: %s, attempts %d (series from %d), conditions %+v\n", digest, scan.Status.Phase,
			scan.Status.Attempts, scan.Status.FirstAttempt, scan.Status.Conditions)
		prefix := "vigil-scan-" + strings.TrimPrefix(digest, "sha256:")[:32]
		for name, output := range runner.Output() {
			if strings.HasPrefix(name, prefix) {
				fmt.Fprintf(&b, "  job %s:\n%s\n", name, output)
			}
		}
	}
	return b.String()
}

func TestReplicasHoldNoTruth(t *testing.T) {
	for _, tc := range []struct {
		replicas    int
		persistence bool
	}{
		{2, false},
		{3, true},
	} {
		t.Run(fmt.Sprintf("%d replicas, persistence %v", tc.replicas, tc.persistence), func(t *testing.T) {
			leaderKilledDuringABurst(t, tc.replicas, tc.persistence)
		})
	}
}

// leaderKilledDuringABurst runs replicas managers with the Job executor behind one "Service",
// records a burst of new images, kills the leader twice at random moments, and checks that every
// image ends Scanned, that none is scanned more than once beyond the attempts in flight when a
// leader died, and that no Vulnerability that should exist is ever deleted.
func leaderKilledDuringABurst(t *testing.T, replicas int, persistence bool) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	w := theWorld(t)
	ensure(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vigil-system"}})
	ensure(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "vigil-system", Name: "vigil-scanner"}})

	certDir := t.TempDir()
	caPEM, err := testenv.WriteServingCertificate(certDir, "127.0.0.1")
	g.Expect(err).NotTo(HaveOccurred())
	balancer, err := testenv.NewBalancer()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = balancer.Close() })
	// Each replica has a store of its own: a volume that survives its restarts (persistence),
	// or none.
	stores := make([]string, replicas)
	for i := range stores {
		stores[i] = filepath.Join(t.TempDir(), "sboms")
	}
	managers := make([]*managerProcess, replicas)
	start := func(i int) {
		store := stores[i]
		if !persistence {
			store = filepath.Join(t.TempDir(), "sboms")
		}
		managers[i] = startManager(t, "--db-listing-url="+w.listingURL, "--db-update-interval=1h", "--scan-retry-backoff=1s",
			"--scan-max-attempts=5", "--leader-elect", "--scan-executor=job", "--scan-concurrency=3",
			"--scanner-image=registry.example/vigil:test", "--webhook-cert-dir="+certDir, "--sbom-dir="+store)
		managers[i].caPEM = caPEM
	}
	backends := func() {
		var addresses []string
		for _, m := range managers {
			addresses = append(addresses, fmt.Sprintf("127.0.0.1:%d", m.webhookPort))
		}
		balancer.SetBackends(addresses...)
	}
	for i := range replicas {
		start(i)
	}
	backends()
	for _, m := range managers {
		m.waitReady(t)
	}

	scanner, err := testenv.BuildBinary("./cmd/vigil-scanner")
	g.Expect(err).NotTo(HaveOccurred())
	runner := &testenv.JobRunner{
		Env: env, Namespace: "vigil-system", Binary: scanner,
		Secrets: map[string]map[string][]byte{"vigil-webhook-tls": {"ca.crt": caPEM}},
		Rewrite: map[string]string{"vigil-webhook.vigil-system.svc:443": balancer.Addr},
	}
	runnerCtx, stopRunner := context.WithCancel(ctx)
	defer stopRunner()
	go runner.Run(runnerCtx)

	// A burst of new images, each in a running pod of its own.
	web := newNamespace(t, nil)
	n := haImages()
	digests := make([]string, n)
	for i := range n {
		image, imageID, digest := w.imageID(t, "shop/api")
		digests[i] = digest
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: web, Name: fmt.Sprintf("api-%d", i)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: image}}},
		}
		g.Expect(testenv.RunPod(ctx, env.Client, pod, map[string]string{image: imageID})).To(Succeed())
	}
	// From the moment one of them is reported, the Vulnerability must never go away.
	g.Eventually(func() ([]string, error) {
		vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44228")
		return workloadNames(vulnerability), err
	}, 5*time.Minute, 250*time.Millisecond).Should(ContainElement(HavePrefix(web + "/")))
	deleted := deletions(t, "CVE-2021-44228")
	scanned := func() int {
		count := 0
		for _, digest := range digests {
			if scan, err := scanOf(ctx, digest); err == nil && scan.Status.Phase == vigilv1alpha1.ImageScanScanned {
				count++
			}
		}
		return count
	}

	// The leader dies twice, at random moments of the burst; a new replica replaces it.
	kills := 0
	var inFlightAtKills int
	var newLeaderAt time.Time
	// The burst takes longer the larger it is: a few seconds an image on a busy machine.
	patience := max(5*time.Minute, time.Duration(n)*3*time.Second)
	for kills < 2 {
		target := rand.IntN(n/2) + kills*n/3 //nolint:gosec // a random moment, not a secret
		g.Eventually(scanned, patience, 100*time.Millisecond).Should(BeNumerically(">=", min(target, n-1)),
			func() string {
				return fmt.Sprintf("%d of %d scanned\n%s", scanned(), n, unscanned(ctx, digests, runner))
			})
		leader := leaderOf(managers)
		g.Expect(leader).NotTo(BeNil(), "no replica leads")
		inFlightBefore := inFlightAtKills
		inFlight := &vigilv1alpha1.ImageScanList{}
		g.Expect(env.Client.List(ctx, inFlight)).To(Succeed())
		for _, scan := range inFlight.Items {
			if scan.Status.Phase == vigilv1alpha1.ImageScanScanning {
				inFlightAtKills++
			}
		}
		g.Expect(leader.cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
		<-leader.exited
		killedAt := time.Now()
		for i := range managers {
			if managers[i] == leader {
				start(i)
			}
		}
		backends()
		kills++
		// The view is complete again within a bounded time after a new leader starts.
		g.Eventually(func() *managerProcess { return leaderOf(managers) }, 60*time.Second, 250*time.Millisecond).ShouldNot(BeNil())
		newLeaderAt = time.Now()
		t.Logf("Leader killed with %d of %d images scanned and %d in flight; a new leader took over after %s",
			scanned(), n, inFlightAtKills-inFlightBefore, newLeaderAt.Sub(killedAt).Round(100*time.Millisecond))
	}

	g.Eventually(scanned, patience, 250*time.Millisecond).Should(Equal(n),
		func() string {
			return fmt.Sprintf("%d of %d scanned\n%s", scanned(), n, unscanned(ctx, digests, runner))
		})
	g.Eventually(func() (int32, error) {
		vulnerability, err := vulnerabilityOf(ctx, "CVE-2021-44228")
		return vulnerability.Status.WorkloadCount, err
	}, 60*time.Second, 250*time.Millisecond).Should(BeNumerically(">=", n))
	// The view is complete: every image scanned and every pod in the Vulnerability.
	t.Logf("The view was complete %s after the last new leader started", time.Since(newLeaderAt).Round(100*time.Millisecond))

	// Each image was scanned once, but for the attempts in flight when a leader died.
	jobsOf := map[string]int{}
	for _, job := range runner.Ran() {
		for _, digest := range digests {
			if strings.HasPrefix(job, "vigil-scan-"+strings.TrimPrefix(digest, "sha256:")[:32]) {
				jobsOf[digest]++
			}
		}
	}
	extra := 0
	for _, digest := range digests {
		g.Expect(jobsOf[digest]).To(BeNumerically(">=", 1))
		extra += jobsOf[digest] - 1
	}
	g.Expect(extra).To(BeNumerically("<=", inFlightAtKills), "images scanned more than once beyond the attempts in flight: %v", jobsOf)
	g.Expect(deleted()).To(BeZero(), "a Vulnerability that should exist was deleted")
	t.Logf("%d images, %d replicas, persistence %v: %d scans repeated after %d leader deaths with %d in flight",
		n, replicas, persistence, extra, kills, inFlightAtKills)
}
