package app

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/vigil-dev/vigil/pkg/dashboard"
)

// dashboardOptions are the flags of `vigil dashboard`.
type dashboardOptions struct {
	cluster   *cluster
	address   string
	port      int
	noBrowser bool
	inCluster bool
}

func newDashboardCommand(stdout io.Writer) *cobra.Command {
	o := &dashboardOptions{}
	cmd := &cobra.Command{
		Use:   "dashboard",
		Short: "Serve the live vulnerability view in a browser, on this machine",
		Long: `Serve a read-only web view of the vulnerabilities that run in the cluster: the list sorted
by severity, search, filters, each vulnerability's detail, a CSV download. It follows the
cluster live: a vulnerability appears when a vulnerable container starts and disappears when
the last one stops.

It reads the cluster with your own kubeconfig and RBAC (you need to list and watch
vulnerabilities.vigil.dev), listens on 127.0.0.1 only and answers requests for localhost
only, and opens your browser when it can; otherwise open the URL it prints.

--in-cluster is how the chart runs it (dashboard.enabled): with its service account, and
every request must bring a Kubernetes bearer token of someone allowed to list vulnerabilities.`,
		Example: `  vigil dashboard
  vigil dashboard --context prod --port 8080 --no-browser
  kubectl vigil dashboard`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return o.run(ctx, stdout)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&o.address, "address", "127.0.0.1", "address to listen on: a loopback address (any address with --in-cluster)")
	flags.IntVar(&o.port, "port", 50760, "port to listen on; 0 picks a free one")
	flags.BoolVar(&o.noBrowser, "no-browser", false, "do not open a browser, only print the URL")
	flags.BoolVar(&o.inCluster, "in-cluster", false, "serve from inside the cluster with the pod's service account, to bearer tokens allowed to list vulnerabilities")
	o.cluster = addClusterFlags(cmd)
	return cmd
}

func (o *dashboardOptions) run(ctx context.Context, stdout io.Writer) error {
	if o.port < 0 || o.port > 65535 {
		return fmt.Errorf("--port %d: use a port from 0 to 65535", o.port)
	}
	ip := net.ParseIP(o.address)
	if !o.inCluster && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--address %q: the dashboard reads with your credentials, so it listens on a loopback address only (127.0.0.1 or ::1)", o.address)
	}
	// The watch logs its failures (a lost connection, a revoked permission) through
	// controller-runtime's logger: klog's, on standard error.
	ctrllog.SetLogger(klog.NewKlogr())
	options := dashboard.Options{}
	if o.inCluster {
		config, err := rest.InClusterConfig()
		if err != nil {
			return fmt.Errorf("--in-cluster: %w", err)
		}
		reviewer, err := client.New(config, client.Options{Scheme: clientgoscheme.Scheme})
		if err != nil {
			return fmt.Errorf("connecting to the cluster: %w", err)
		}
		options.Config = config
		options.Authorizer = &dashboard.KubernetesAuthorizer{Client: reviewer, TTL: 10 * time.Second}
	} else {
		config, err := o.cluster.config()
		if err != nil {
			return err
		}
		options.Config = config
	}
	listener, err := net.Listen("tcp", net.JoinHostPort(o.address, strconv.Itoa(o.port)))
	if err != nil {
		return fmt.Errorf("listening for the dashboard: %w", err)
	}
	defer listener.Close()
	if os.Getenv("GOGC") == "" {
		// The dashboard holds one watch and answers few requests: a smaller heap is worth the
		// extra collections (GOGC still overrides it).
		debug.SetGCPercent(25)
	}
	server, err := dashboard.New(ctx, options)
	if err != nil {
		return err
	}
	// Decoding the first list leaves garbage as large as the list: return it to the system now
	// rather than at the scavenger's pace.
	debug.FreeOSMemory()
	url := "http://" + listener.Addr().String() + "/"
	if !o.inCluster {
		url = fmt.Sprintf("http://localhost:%d/", listener.Addr().(*net.TCPAddr).Port)
	}
	fmt.Fprintf(stdout, "Vigil dashboard: %s (Ctrl-C to stop)\n", url)
	if !o.inCluster && !o.noBrowser {
		if err := dashboard.OpenBrowser(url); err != nil {
			fmt.Fprintf(stdout, "Open %s in a browser (%v).\n", url, err)
		}
	}
	return dashboard.Serve(ctx, listener, server)
}
