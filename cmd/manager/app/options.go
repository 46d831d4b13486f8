package app

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Options are the manager's command-line settings.
type Options struct {
	// MetricsBindAddress is where the metrics endpoint listens; "0" turns it off.
	MetricsBindAddress string
	// SecureMetrics serves metrics over HTTPS behind Kubernetes authentication and authorization.
	SecureMetrics bool
	// MetricsCertDir holds the metrics server's tls.crt and tls.key; empty means a self-signed one.
	MetricsCertDir string
	// HealthProbeBindAddress is where /healthz and /readyz listen.
	HealthProbeBindAddress string
	// LeaderElect runs the reconcilers on one elected replica at a time.
	LeaderElect bool
	// LeaderElectionNamespace holds the leader-election Lease; empty means the manager's namespace.
	LeaderElectionNamespace string
	// WebhookHost is the address the admission webhook server listens on; empty means all.
	WebhookHost string
	// WebhookPort is the port of the admission webhook server.
	WebhookPort int
	// WebhookCertDir holds the webhook server's tls.crt and tls.key.
	WebhookCertDir string
	// Namespace is the namespace Vigil runs in; the webhook skips its requests.
	Namespace string
	// ServiceAccountName is the manager's service account; the webhook skips its requests.
	ServiceAccountName string
	// WebhookConcurrency bounds the admission requests examined at once.
	WebhookConcurrency int
	// EnableHTTP2 serves HTTP/2 on the webhook and metrics servers.
	EnableHTTP2 bool
	// GracefulShutdownTimeout bounds how long the manager waits for its parts to stop.
	GracefulShutdownTimeout time.Duration
	// Zap configures the structured logs.
	Zap zap.Options
}

// newFlagSet returns the manager's flags bound to options, with their defaults.
func newFlagSet(options *Options) *flag.FlagSet {
	fs := flag.NewFlagSet("vigil-manager", flag.ContinueOnError)
	fs.StringVar(&options.MetricsBindAddress, "metrics-bind-address", ":8443",
		`Address of the metrics endpoint, for example ":8443"; "0" turns metrics off.`)
	fs.BoolVar(&options.SecureMetrics, "metrics-secure", true,
		"Serve metrics over HTTPS, only to clients that Kubernetes authenticates and authorizes for GET /metrics.")
	fs.StringVar(&options.MetricsCertDir, "metrics-cert-dir", "",
		"Folder with the metrics server's tls.crt and tls.key; empty generates a self-signed certificate.")
	fs.StringVar(&options.HealthProbeBindAddress, "health-probe-bind-address", ":8081",
		"Address of the /healthz and /readyz probe endpoints.")
	fs.BoolVar(&options.LeaderElect, "leader-elect", false,
		"Elect a leader so that only one replica reconciles; every replica serves the webhook.")
	fs.StringVar(&options.LeaderElectionNamespace, "leader-election-namespace", "",
		"Namespace of the leader-election Lease; empty means the namespace the manager runs in.")
	fs.StringVar(&options.WebhookHost, "webhook-host", "",
		"Address the admission webhook server listens on; empty listens on every address.")
	fs.IntVar(&options.WebhookPort, "webhook-port", 9443, "Port of the admission webhook server.")
	fs.StringVar(&options.WebhookCertDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs",
		"Folder with the webhook server's tls.crt and tls.key (cert-manager fills it in the Helm chart).")
	fs.StringVar(&options.Namespace, "namespace", envOr("POD_NAMESPACE", "vigil-system"),
		"Namespace Vigil runs in (default $POD_NAMESPACE, else vigil-system); the webhook does not observe it.")
	fs.StringVar(&options.ServiceAccountName, "service-account-name", envOr("SERVICE_ACCOUNT_NAME", "vigil"),
		"The manager's service account (default $SERVICE_ACCOUNT_NAME, else vigil); the webhook skips its requests.")
	fs.IntVar(&options.WebhookConcurrency, "webhook-concurrency", 64,
		"Admission requests examined at once; beyond it requests are allowed without being examined, and the pod watch records their images later.")
	fs.BoolVar(&options.EnableHTTP2, "enable-http2", false,
		"Serve HTTP/2 on the webhook and metrics servers; off by default against HTTP/2 stream attacks.")
	fs.DurationVar(&options.GracefulShutdownTimeout, "graceful-shutdown-timeout", 30*time.Second,
		"How long to wait for the manager's parts to stop after SIGTERM.")
	options.Zap = zap.Options{Development: false}
	options.Zap.BindFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: vigil-manager [flags]\n\n"+
			"Runs Vigil's manager: the observe-only admission webhook on every replica and, on the\n"+
			"elected leader, the reconcilers that scan images and keep the findings.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parse reads the command line into options; it returns flag.ErrHelp for -h and --help.
func parse(args []string) (*Options, error) {
	options := &Options{}
	fs := newFlagSet(options)
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if options.WebhookPort <= 0 || options.WebhookPort > 65535 {
		return nil, fmt.Errorf("--webhook-port %d is not a port number", options.WebhookPort)
	}
	if options.WebhookConcurrency <= 0 {
		return nil, fmt.Errorf("--webhook-concurrency %d must be positive", options.WebhookConcurrency)
	}
	if options.Namespace == "" {
		return nil, errors.New("--namespace must not be empty")
	}
	if options.GracefulShutdownTimeout < 0 {
		return nil, errors.New("--graceful-shutdown-timeout must not be negative")
	}
	return options, nil
}

// envOr is the value of the environment variable name, or fallback when it is empty.
func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
