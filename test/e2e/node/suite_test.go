//go:build e2e

// Package node runs Vigil's end-to-end stories on a real single-node cluster (test/cluster): the
// chart installed with helm as the README says, its pods run by a real kubelet, its certificate
// issued by cert-manager's real controllers, its scans run as real Job pods, and workloads made
// by the real controllers. `make e2e` runs it (as root: the cluster needs it).
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v6distribution "github.com/anchore/grype/grype/db/v6/distribution"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilscheme "github.com/vigil-dev/vigil/pkg/scheme"
	"github.com/vigil-dev/vigil/test/cluster"
	"github.com/vigil-dev/vigil/test/fixtures/fixturedb"
	"github.com/vigil-dev/vigil/test/testenv"
)

// The suite's shared state: one cluster, one install of the chart, the stories in file order.
var (
	c         *cluster.Cluster
	k8s       client.Client
	root      string
	helmPath  string
	helmEnv   []string
	dbURL     string
	imageRepo string
	logDir    string
)

// fixtureDBPort serves the fixture vulnerability database on the node's address.
const fixtureDBPort = 8089

func TestMain(m *testing.M) {
	if err := cluster.CanRun(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code, err := setUpAndRun(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Setting up the end-to-end suite: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func setUpAndRun(m *testing.M) (code int, err error) {
	ctx := context.Background()
	if root, err = testenv.ModuleRoot(); err != nil {
		return 1, err
	}
	helmPath = filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(helmPath); err != nil {
		return 1, fmt.Errorf("bin/helm is missing (make tools builds it): %w", err)
	}
	work, err := os.MkdirTemp("", "vigil-e2e-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(work)
	helmEnv = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(work, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(work, "helm-config"), "HELM_DATA_HOME="+filepath.Join(work, "helm-data"))

	start := time.Now()
	c, err = cluster.Start(ctx, cluster.Options{Log: func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Since(start).Round(time.Second)}, args...)...)
	}})
	if err != nil {
		return 1, err
	}
	logDir = c.LogDir
	defer func() {
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the cluster: %w", stopErr))
		}
	}()
	scheme, err := vigilscheme.New()
	if err != nil {
		return 1, err
	}
	if k8s, err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
		return 1, err
	}
	os.Setenv("KUBECONFIG", c.KubeconfigPath)

	// Vigil's image, built without a container engine, into the cluster's registry; and Vigil
	// scans it (no Critical finding allowed).
	imageRepo = c.Registry + "/vigil"
	layout := filepath.Join(work, "vigil-image")
	if err := runIn(root, "go", "run", "./hack/image", "--oci-layout", layout, "--push", imageRepo+":e2e", "--plain-http"); err != nil {
		return 1, err
	}

	// The fixture vulnerability database, served on the node's address for the manager's
	// --db-listing-url.
	built, err := fixturedb.Build(filepath.Join(work, "db-build"), time.Now(), filepath.Join(root, "test", "fixtures", "advisories"))
	if err != nil {
		return 1, err
	}
	distribution := filepath.Join(work, "db-distribution")
	if _, err := built.Package(distribution); err != nil {
		return 1, err
	}
	listener, err := net.Listen("tcp", fmt.Sprintf("%s:%d", cluster.NodeIP, fixtureDBPort))
	if err != nil {
		return 1, err
	}
	dbServer := &http.Server{Handler: http.FileServer(http.Dir(distribution)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = dbServer.Serve(listener) }()
	defer dbServer.Close()
	dbURL = fmt.Sprintf("http://%s:%d/%s", cluster.NodeIP, fixtureDBPort, v6distribution.LatestFileName)

	scanner, err := testenv.BuildBinary("./cmd/vigil-scanner")
	if err != nil {
		return 1, err
	}
	defer testenv.RemoveBinaries()
	if err := runIn(root, scanner, "scan", "oci-dir:"+layout, "--db-url", dbURL, "--db-cache", filepath.Join(work, "db-cache"),
		"--fail-on", "critical", "--quiet"); err != nil {
		return 1, fmt.Errorf("Vigil's own image: %w", err)
	}

	// cert-manager: its CRDs, and its real controllers and cainjector as a process.
	crds, err := testenv.CertManagerCRDDir()
	if err != nil {
		return 1, err
	}
	if _, err := c.Kubectl(ctx, "apply", "--server-side", "-f", crds); err != nil {
		return 1, err
	}
	certManager, err := testenv.BuildBinary("./hack/cert-manager")
	if err != nil {
		return 1, err
	}
	stopCertManager, err := startProcess(filepath.Join(logDir, "cert-manager.log"), certManager, "--kubeconfig", c.KubeconfigPath)
	if err != nil {
		return 1, err
	}
	defer stopCertManager()

	return m.Run(), nil
}

// runIn runs a command in dir, its output going to the test's standard error.
func runIn(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// startProcess starts a process with its output in logPath, and returns what stops it.
func startProcess(logPath, name string, args ...string) (func(), error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, err
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logFile.Close()
	}, nil
}

// helm runs helm with the admin kubeconfig in the module root, as a user in a checkout does.
func helm(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(helmPath, append(args, "--kubeconfig", c.KubeconfigPath)...)
	cmd.Dir = root
	cmd.Env = helmEnv
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// kubectl runs kubectl as the cluster's admin.
func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := c.Kubectl(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
