//go:build e2e

package node

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v6distribution "github.com/anchore/grype/grype/db/v6/distribution"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/test/cluster"
	"github.com/vigil-dev/vigil/test/corpus"
	"github.com/vigil-dev/vigil/test/fixtures/fixturedb"
	"github.com/vigil-dev/vigil/test/testenv"
)

// nodeAdmissionCases are the corpus images BenchmarkAdmissionToVulnerabilityOnTheNode admits,
// each with a vulnerability it must report; VIGIL_BENCH_IMAGES (comma-separated names) selects
// among them, node-app alone by default.
var nodeAdmissionCases = []struct{ image, vulnerability string }{
	{"node-app", "CVE-2021-44906"},
	{"java-app", "CVE-2022-1471"},
}

// benchDBPort serves the benchmark's database (the fixtures and the corpus's advisories) on the
// node's address.
const benchDBPort = 8090

// BenchmarkAdmissionToVulnerabilityOnTheNode measures, on the real node with the chart installed
// as the README says (two manager replicas, scan Jobs with the default limits), the time from a
// Deployment's creation to the Vulnerability that lists it, for corpus images in the cluster's
// registry, and the grype CLI's time to scan the same image from the same registry with the same
// database. Each round pushes the image again with one more layer (a digest never scanned) and
// runs the CLI, then admits the Deployment, so that whatever else runs weighs on both alike. The
// time includes what a user waits for: the webhook, the scan Job (its pod scheduled, the image
// pulled and scanned within the Job's limits), the match, and the kubelet starting the
// Deployment's container (findings list running containers only).
//
//	make bench-node    # VIGIL_BENCH_IMAGES=node-app,java-app for both images;
//	                   # VIGIL_BENCH_HELM_SET=resources.scanner.limits.cpu=1 for other values
func BenchmarkAdmissionToVulnerabilityOnTheNode(b *testing.B) {
	dir := corpus.Require(b)
	built, err := fixturedb.Build(filepath.Join(b.TempDir(), "db"), time.Now(),
		filepath.Join(root, "test", "fixtures", "advisories"), filepath.Join(root, "test", "fixtures", "advisories-corpus"))
	if err != nil {
		b.Fatal(err)
	}
	grype := corpus.NewGrypeCLI(b, root, built.Dir)
	distribution := b.TempDir()
	if _, err := built.Package(distribution); err != nil {
		b.Fatal(err)
	}
	listener, err := net.Listen("tcp", fmt.Sprintf("%s:%d", cluster.NodeIP, benchDBPort))
	if err != nil {
		b.Fatal(err)
	}
	dbServer := &http.Server{Handler: http.FileServer(http.Dir(distribution)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = dbServer.Serve(listener) }()
	defer dbServer.Close()

	values := []string{"--set", fmt.Sprintf("database.listingURL=http://%s:%d/%s", cluster.NodeIP, benchDBPort, v6distribution.LatestFileName)}
	if set := os.Getenv("VIGIL_BENCH_HELM_SET"); set != "" {
		values = append(values, "--set", set)
	}
	helm(b, installArgs(values...)...)
	defer helm(b, "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "5m")
	createNamespace(b, "bench")

	// One admission of the small Go image first, so that the managers' first database download
	// and the node's first scan Job are not timed.
	reference, err := pushUnique(b, dir, "go-app", "warm-up")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := admitOnTheNode(b, "warm-up", reference, "CVE-2022-32149"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		var report strings.Builder
		for _, tc := range nodeAdmissionCases {
			only := os.Getenv("VIGIL_BENCH_IMAGES")
			if (only == "" && tc.image != "node-app") || (only != "" && !slices.Contains(strings.Split(only, ","), tc.image)) {
				continue
			}
			line, err := grype.CompareAdmissions(tc.image,
				func(name string) (string, error) { return pushUnique(b, dir, tc.image, name) },
				func(name, reference string) (time.Duration, error) {
					return admitOnTheNode(b, name, reference, tc.vulnerability)
				},
				func(round corpus.AdmissionRound) {
					recordMeasurement(b, fmt.Sprintf("admission to Vulnerability on the node: %s: %.2f s; grype CLI %.2f s",
						round.Name, round.Admission.Seconds(), round.CLI.Seconds()))
				})
			if err != nil {
				b.Fatal(err)
			}
			report.WriteString(line)
		}
		fmt.Print("\nMedians of 3 rounds, interleaved (grype CLI, then admission), same registry and database:\n" + report.String())
	}
}

// pushUnique pushes the corpus image with one more layer (a digest never scanned) and the pause
// binary to run, as bench/NAME:1 in the cluster's registry, and returns its reference.
func pushUnique(b *testing.B, dir, image, name string) (string, error) {
	img, err := corpus.Unique(dir, image, name)
	if err != nil {
		return "", err
	}
	if img, err = c.WithPause(img); err != nil {
		return "", err
	}
	if _, err := c.Push(b.Context(), img, "bench/"+name+":1"); err != nil {
		return "", err
	}
	return c.Registry + "/bench/" + name + ":1", nil
}

// admitOnTheNode creates a Deployment named name of reference and returns the time from the
// creation until the Vulnerability id lists the Deployment; it deletes the Deployment then.
func admitOnTheNode(b *testing.B, name, reference, id string) (time.Duration, error) {
	ctx := b.Context()
	deployment := testenv.Deployment("bench", name, reference)
	start := time.Now()
	if err := k8s.Create(ctx, deployment); err != nil {
		return 0, err
	}
	defer func() { _ = k8s.Delete(ctx, deployment, client.PropagationPolicy(metav1.DeletePropagationForeground)) }()
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		vulnerability := &vigilv1alpha1.Vulnerability{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.VulnerabilityName(id)}, vulnerability); err == nil {
			for _, workload := range vulnerability.Status.Workloads {
				if workload.Namespace == "bench" && workload.Kind == "Deployment" && workload.Name == name {
					return time.Since(start), nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s did not list Deployment bench/%s within 10 minutes; manager logs in %s", id, name, logDir)
}
