// Package app is Vigil's local demo: a real API server on loopback, a registry of sample images,
// the vulnerability database in grype's distribution format, the manager with its webhook and
// in-process scans, and sample workloads whose pods run the way a kubelet would run them.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	v6distribution "github.com/anchore/grype/grype/db/v6/distribution"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/dashboard"
	"github.com/vigil-dev/vigil/test/fixtures/fixturedb"
	"github.com/vigil-dev/vigil/test/fixtures/images"
	"github.com/vigil-dev/vigil/test/fixtures/registry"
	"github.com/vigil-dev/vigil/test/testenv"
)

// expected are the vulnerabilities the sample workloads run; the demo waits for them.
var expected = []string{"CVE-2021-44228", "CVE-2021-44906", "CVE-2020-14343", "CVE-2023-0286"}

// Main runs the demo with args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	once := fs.Bool("once", false, "print the vulnerability view, clean up and exit, without waiting for Ctrl-C")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: demo [--once]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "demo: unexpected arguments: %s\nUsage: demo [--once]\n", strings.Join(fs.Args(), " "))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first Ctrl-C the demo stops what it started; a second one ends it at once.
	context.AfterFunc(ctx, stop)
	if err := run(ctx, *once, stdout); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	return 0
}

// demo is what the demo started, to stop in reverse order.
type demo struct {
	out     io.Writer
	workDir string
	cleanup []func()
	start   time.Time
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.out, "[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// begin announces the next step of the start, unless the demo was stopped (Ctrl-C) meanwhile.
func (d *demo) begin(ctx context.Context, format string, args ...any) error {
	if ctx.Err() != nil {
		return errStopped
	}
	d.step(format, args...)
	return nil
}

// errStopped ends a start cut short by Ctrl-C or SIGTERM; it is no failure.
var errStopped = errors.New("stopped")

func (d *demo) onStop(f func()) {
	d.cleanup = append(d.cleanup, f)
}

func (d *demo) stopAll() {
	for i := len(d.cleanup) - 1; i >= 0; i-- {
		d.cleanup[i]()
	}
}

func run(ctx context.Context, once bool, out io.Writer) error {
	workDir, err := os.MkdirTemp("", "vigil-demo-")
	if err != nil {
		return err
	}
	d := &demo{out: out, workDir: workDir, start: time.Now()}
	defer func() {
		d.stopAll()
		_ = os.RemoveAll(workDir)
		fmt.Fprintf(out, "Stopped everything and removed %s\n", workDir)
	}()
	fmt.Fprintf(out, "Vigil demo (work folder: %s)\n", workDir)

	if err := d.begin(ctx, "Starting etcd and kube-apiserver on loopback"); err != nil {
		return err
	}
	env, err := testenv.StartIn(filepath.Join(workDir, "controlplane"))
	if err != nil {
		return err
	}
	d.onStop(func() { _ = env.Stop() })

	if err := d.begin(ctx, "Starting a registry with the sample images"); err != nil {
		return err
	}
	reg := registry.Start(registry.Options{})
	d.onStop(reg.Close)
	refs := map[string]string{}
	imageIDs := map[string]string{}
	for repository, recipe := range map[string]func() (v1.Image, error){
		"shop/api": images.JavaLog4j, "shop/db": images.DebianOpenSSL, "jobs/report": images.NodeMinimist,
		"tools/yaml-lint": images.PythonPyYAML, "tools/greeter": images.GoTextBinary, "sandbox/web": images.AlpineOpenSSL,
		"tools/clean": images.Clean,
	} {
		img, err := recipe()
		if err != nil {
			return fmt.Errorf("building image %s: %w", repository, err)
		}
		pinned, err := reg.Push(img, repository, "1.0")
		if err != nil {
			return err
		}
		refs[repository] = reg.Host + "/" + repository + ":1.0"
		imageIDs[refs[repository]] = pinned
	}

	if err := d.begin(ctx, "Building the vulnerability database from the advisory fixtures with grype's builder"); err != nil {
		return err
	}
	root, err := testenv.ModuleRoot()
	if err != nil {
		return err
	}
	built, err := fixturedb.Build(filepath.Join(workDir, "db-build"), time.Now(), filepath.Join(root, "test", "fixtures", "advisories"))
	if err != nil {
		return err
	}
	distribution := filepath.Join(workDir, "db-distribution")
	if _, err := built.Package(distribution); err != nil {
		return err
	}
	dbServer := httptest.NewServer(http.FileServer(http.Dir(distribution)))
	d.onStop(dbServer.Close)

	if err := d.begin(ctx, "Starting the Vigil manager with its admission webhook and in-process scans"); err != nil {
		return err
	}
	webhookPort, caPEM, err := d.startManager(ctx, env, dbServer.URL+"/"+v6distribution.LatestFileName)
	if err != nil {
		return err
	}
	if _, err := env.InstallWebhook(ctx, "vigil", webhookPort, caPEM); err != nil {
		return err
	}

	if err := d.begin(ctx, "Creating sample workloads and running their pods"); err != nil {
		return err
	}
	if err := createWorkloads(ctx, env.Client, refs, imageIDs); err != nil {
		return err
	}

	if err := d.begin(ctx, "Waiting for the findings (scans of 7 images, then matching)"); err != nil {
		return err
	}
	if err := waitForFindings(ctx, env.Client, d); err != nil {
		return err
	}
	d.step("Findings are in")

	view, err := env.Kubectl(ctx, "get", "vulnerabilities", "--sort-by=.status.details.rank")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n$ kubectl get vulnerabilities --sort-by=.status.details.rank\n%s", view)
	mostSevere, err := mostSevereVulnerability(ctx, env.Client)
	if err != nil {
		return err
	}
	detail, err := env.Kubectl(ctx, "describe", "vulnerability", mostSevere)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\n$ kubectl describe vulnerability %s\n%s", mostSevere, detail)
	dashboardURL, err := d.startDashboard(ctx, env)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nThe live vulnerability view in a browser: %s\n", dashboardURL)
	if !once {
		if err := dashboard.OpenBrowser(dashboardURL); err != nil {
			fmt.Fprintf(out, "Open it in a browser (%v).\n", err)
		}
	}
	kubectl := env.KubectlPath
	fmt.Fprintf(out, `
The cluster runs until you stop the demo. Try, in another terminal:

  export KUBECONFIG=%s
  alias kubectl=%s
  kubectl get vulnerabilities -o wide
  go run ./cmd/vigil vulns --severity critical,high --min-cvss 9
  go run ./cmd/vigil vulns --search GHSA-jfh8-c2jp-5v3q
  go run ./cmd/vigil vuln CVE-2021-44228
  go run ./cmd/vigil workload shop/Deployment/api
  go run ./cmd/vigil dashboard
  kubectl get vulnerabilities -l vigil.dev/severity=critical
  kubectl get vulnerabilities -l 'vigil.dev/cvss-x10>90'
  kubectl get imagescans
  kubectl describe imagescan <name>
  # stop the Deployment's pods (there is no kubelet here; this does what it would) and watch
  # CVE-2021-44228 disappear:
  kubectl delete pods -n shop -l app=api --grace-period=0
  kubectl get vulnerabilities -w     # and watch its row leave the dashboard
`, env.KubeconfigPath, kubectl)
	if once {
		return nil
	}
	fmt.Fprintln(out, "\nPress Ctrl-C to stop the demo and remove everything it started.")
	<-ctx.Done()
	return nil
}

// startDashboard serves the dashboard on a free loopback port with the demo's admin
// credentials, as `vigil dashboard` does with a user's; it returns the dashboard's URL.
func (d *demo) startDashboard(ctx context.Context, env *testenv.Environment) (string, error) {
	// The dashboard's watch ends before the API server stops, not when the demo is interrupted.
	serveCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	ctrllog.SetLogger(klog.NewKlogr())
	server, err := dashboard.New(serveCtx, dashboard.Options{Config: env.Config})
	if err != nil {
		stop()
		return "", err
	}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stop()
		return "", fmt.Errorf("listening for the dashboard: %w", err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = dashboard.Serve(serveCtx, listener, server)
	}()
	d.onStop(func() { stop(); <-served })
	return fmt.Sprintf("http://localhost:%d/", listener.Addr().(*net.TCPAddr).Port), nil
}

// startManager builds and starts vigil-manager against env; it returns the webhook's port and CA.
func (d *demo) startManager(ctx context.Context, env *testenv.Environment, listingURL string) (int, []byte, error) {
	binary, err := testenv.BuildBinary("./cmd/manager")
	if err != nil {
		return 0, nil, err
	}
	d.onStop(testenv.RemoveBinaries)
	certDir := filepath.Join(d.workDir, "webhook-certs")
	caPEM, err := testenv.WriteServingCertificate(certDir, "127.0.0.1")
	if err != nil {
		return 0, nil, err
	}
	ports, err := testenv.FreePorts(3)
	if err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(binary,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[0]), fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[1]),
		"--webhook-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", ports[2]), "--webhook-cert-dir="+certDir,
		"--sbom-dir="+filepath.Join(d.workDir, "sboms"), "--db-dir="+filepath.Join(d.workDir, "db"),
		"--db-listing-url="+listingURL, "--db-update-interval=1m", "--namespace=vigil-system")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.KubeconfigPath)
	logFile, err := os.Create(filepath.Join(d.workDir, "manager.log"))
	if err != nil {
		return 0, nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("starting the manager: %w", err)
	}
	d.onStop(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logFile.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		response, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1]))
		if err == nil {
			_ = response.Body.Close()
			if response.StatusCode == http.StatusOK {
				return ports[2], caPEM, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, nil, errors.New("the manager did not become ready; see manager.log in the work folder")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// createWorkloads creates the sample namespaces and workloads and runs their pods.
func createWorkloads(ctx context.Context, c client.Client, refs, imageIDs map[string]string) error {
	for name, labels := range map[string]map[string]string{
		"shop": nil, "jobs": nil, "tools": nil,
		"sandbox": {vigilv1alpha1.ScanningLabel: vigilv1alpha1.ScanningDisabled},
	} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
			return err
		}
	}
	for _, w := range []struct {
		deployment *appsv1.Deployment
		replicas   int
	}{
		{testenv.Deployment("shop", "api", refs["shop/api"]), 2},
		{testenv.Deployment("tools", "clean", refs["tools/clean"]), 1},
		{testenv.Deployment("sandbox", "web", refs["sandbox/web"]), 1}, // opted out: never reported
	} {
		if err := c.Create(ctx, w.deployment); err != nil {
			return err
		}
		if _, err := testenv.RunDeployment(ctx, c, w.deployment, w.replicas, imageIDs); err != nil {
			return err
		}
	}

	// A StatefulSet and its pod.
	dbLabels := map[string]string{"app": "db"}
	statefulSet := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: dbLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: dbLabels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Image: refs["shop/db"]}}},
			},
		},
	}
	if err := c.Create(ctx, statefulSet); err != nil {
		return err
	}
	dbPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-0", Labels: dbLabels}, Spec: statefulSet.Spec.Template.Spec}
	if err := controllerutil.SetControllerReference(statefulSet, dbPod, c.Scheme()); err != nil {
		return err
	}
	if err := testenv.RunPod(ctx, c, dbPod, imageIDs); err != nil {
		return err
	}

	// A CronJob, one of its Jobs and that Job's pod.
	reportSpec := corev1.PodSpec{RestartPolicy: corev1.RestartPolicyOnFailure, Containers: []corev1.Container{{Name: "report", Image: refs["jobs/report"]}}}
	cronJob := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: "jobs", Name: "nightly-report"},
		Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{Spec: reportSpec},
		}}},
	}
	if err := c.Create(ctx, cronJob); err != nil {
		return err
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: "jobs", Name: "nightly-report-29400180"},
		Spec:       batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: reportSpec}},
	}
	job.Spec.Template.Labels = map[string]string{"batch.kubernetes.io/job-name": job.Name}
	job.Spec.ManualSelector = new(true)
	job.Spec.Selector = &metav1.LabelSelector{MatchLabels: job.Spec.Template.Labels}
	if err := controllerutil.SetControllerReference(cronJob, job, c.Scheme()); err != nil {
		return err
	}
	if err := c.Create(ctx, job); err != nil {
		return err
	}
	jobPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "jobs", Name: job.Name + "-h2x9k", Labels: job.Spec.Template.Labels}, Spec: reportSpec}
	if err := controllerutil.SetControllerReference(job, jobPod, c.Scheme()); err != nil {
		return err
	}
	if err := testenv.RunPod(ctx, c, jobPod, imageIDs); err != nil {
		return err
	}

	// Bare pods.
	for name, repository := range map[string]string{"yaml-lint": "tools/yaml-lint", "greeter": "tools/greeter"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "tools", Name: name},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: refs[repository]}}},
		}
		if err := testenv.RunPod(ctx, c, pod, imageIDs); err != nil {
			return err
		}
	}
	return nil
}

// waitForFindings waits until every expected vulnerability is reported, printing progress.
func waitForFindings(ctx context.Context, c client.Client, d *demo) error {
	deadline := time.Now().Add(3 * time.Minute)
	last := ""
	for {
		scans := &vigilv1alpha1.ImageScanList{}
		vulnerabilities := &vigilv1alpha1.VulnerabilityList{}
		if err := c.List(ctx, scans); err != nil {
			return err
		}
		if err := c.List(ctx, vulnerabilities); err != nil {
			return err
		}
		scanned := 0
		for _, scan := range scans.Items {
			if scan.Status.Phase == vigilv1alpha1.ImageScanScanned {
				scanned++
			}
		}
		found := map[string]bool{}
		for _, v := range vulnerabilities.Items {
			found[v.Status.Details.ID] = true
		}
		missing := 0
		for _, id := range expected {
			if !found[id] {
				missing++
			}
		}
		progress := fmt.Sprintf("%d images scanned, %d vulnerabilities reported", scanned, len(vulnerabilities.Items))
		if progress != last {
			d.step("%s", progress)
			last = progress
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the findings did not come within 3 minutes (%s); see manager.log", progress)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// mostSevereVulnerability is the name of the Vulnerability of the highest severity, and of the
// highest CVSS score within it.
func mostSevereVulnerability(ctx context.Context, c client.Client) (string, error) {
	vulnerabilities := &vigilv1alpha1.VulnerabilityList{}
	if err := c.List(ctx, vulnerabilities); err != nil {
		return "", err
	}
	best, bestRank, bestScore := "", int32(99), -1.0
	for _, v := range vulnerabilities.Items {
		score := -1.0
		if v.Status.Details.Score != nil {
			score = *v.Status.Details.Score
		}
		rank := v.Status.Details.SeverityRank
		if rank < bestRank || (rank == bestRank && score > bestScore) {
			best, bestRank, bestScore = v.Name, rank, score
		}
	}
	if best == "" {
		return "", errors.New("no vulnerability is reported")
	}
	return best, nil
}
