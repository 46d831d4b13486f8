// Package view holds the stories of the vulnerability view on a real kube-apiserver and etcd:
// the vigil terminal commands, and the dashboard in a browser (headless Chromium from Debian's
// packages, installed by make chromium), which saves screenshots of what it saw. They are
// skipped with -short.
package view

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vigil-dev/vigil/pkg/dashboard"
	"github.com/vigil-dev/vigil/test/testenv"
)

var (
	// env is the control plane that every test of the package shares.
	env *testenv.Environment
	// dashboardURL is the dashboard's address, served by the test with the admin's credentials.
	dashboardURL string
	// browser is the allocator of Chromium tabs.
	browser context.Context
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("Skipping the browser tests in -short mode")
		os.Exit(0)
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	chromium, err := chromiumPath()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "Starting the test control plane: %v\n", err)
		return 1
	}
	defer func() {
		testenv.RemoveBinaries()
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "Stopping the test control plane: %v\n", err)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctrllog.SetLogger(klog.NewKlogr())
	stop, err := serveDashboard(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Starting the dashboard: %v\n", err)
		return 1
	}
	defer stop()

	allocator, cancelAllocator := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-dev-shm-usage", true))...)
	defer cancelAllocator()
	browser = allocator
	return m.Run()
}

// chromiumPath is the Chromium that make chromium installs: bin/chromium, or else on PATH.
func chromiumPath() (string, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return "", err
	}
	if path := filepath.Join(root, "bin", "chromium"); fileExists(path) {
		return path, nil
	}
	if path, err := exec.LookPath("chromium"); err == nil {
		return path, nil
	}
	return "", errors.New("chromium is not installed: run 'make chromium' (it installs Debian's chromium package)")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// serveDashboard serves the dashboard on a free loopback port, as `vigil dashboard` does.
func serveDashboard(ctx context.Context) (func(), error) {
	server, err := dashboard.New(ctx, dashboard.Options{Config: env.Config})
	if err != nil {
		return nil, err
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	dashboardURL = fmt.Sprintf("http://localhost:%d", listener.Addr().(*net.TCPAddr).Port)
	httpServer := &http.Server{Handler: server, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = httpServer.Serve(listener) }()
	return func() { _ = httpServer.Close() }, nil
}

// newTab opens a browser tab for one test; it closes with the test.
func newTab(t *testing.T) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(tab, 2*time.Minute)
	t.Cleanup(cancelTimeout)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("Starting Chromium: %v", err)
	}
	return ctx
}

// artifactsDir is where the tests save screenshots: $ARTIFACTS/dashboard, or bin/artifacts/dashboard.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS")
	if dir == "" {
		root, err := testenv.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "bin", "artifacts")
	}
	dir = filepath.Join(dir, "dashboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the whole page as name.png among the artifacts.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("Taking the screenshot %s: %v", name, err)
	}
	path := filepath.Join(artifactsDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("Saved %s", path)
}

// rows are the IDs of the list's rows, in order.
func rows(ctx context.Context) ([]string, error) {
	return chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("table.vulns tbody tr")].map(r => r.dataset.id)`))
}
