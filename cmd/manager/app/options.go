package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/reconciler/namespace"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/vigil-dev/vigil/pkg/executor"
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
	// WebhookClientCAFile, when set, is a CA bundle: admission requests are served only to TLS
	// clients with a certificate of that CA (the API server's admission client certificate).
	WebhookClientCAFile string
	// Namespace is the namespace Vigil runs in; the webhook skips its requests.
	Namespace string
	// ServiceAccountName is the manager's service account; the webhook skips its requests.
	ServiceAccountName string
	// WebhookConcurrency bounds the admission requests examined at once.
	WebhookConcurrency int
	// SBOMDir holds the stored SBOMs; a volume in the cluster.
	SBOMDir string
	// DatabaseDir is the vulnerability database root; a volume in the cluster.
	DatabaseDir string
	// DatabaseListingURL is the database distribution listing to update from.
	DatabaseListingURL string
	// DatabaseImportFile is an archive to import instead, for air-gapped clusters.
	DatabaseImportFile string
	// DatabaseUpdateInterval is the time between database checks.
	DatabaseUpdateInterval time.Duration
	// ScanExecutor is "in-process" or "job".
	ScanExecutor string
	// ScanConcurrency bounds the scans in flight, in the manager or as Jobs.
	ScanConcurrency int
	// MatchConcurrency bounds the SBOM matches that run at once in the manager.
	MatchConcurrency int
	// Retention is how long an image that nothing runs keeps its ImageScan and SBOM.
	Retention time.Duration
	// ExcludedNamespaces are not observed, scanned, reported or given scanning RBAC.
	ExcludedNamespaces []string
	// MaxImagesPerNamespace bounds the distinct images recorded for one namespace per hour.
	MaxImagesPerNamespace int
	// ScannerUserNamespace runs scan pods in user namespaces of their own (hostUsers: false).
	ScannerUserNamespace bool
	// ScanTimeout bounds one scan.
	ScanTimeout time.Duration
	// ScanMaxAttempts bounds the attempts of one digest.
	ScanMaxAttempts int
	// ScanRetryBackoff is the wait after a first failed attempt, doubled after each further one.
	ScanRetryBackoff time.Duration
	// MaxImageSize and MaxSBOMSize bound what is scanned, in bytes (0: no bound).
	MaxImageSize, MaxSBOMSize int64
	// Platform is the platform scanned of multi-platform images.
	Platform string
	// PlainHTTPRegistries and SkipTLSVerifyRegistries list registries reached over plain HTTP or
	// without certificate verification.
	PlainHTTPRegistries, SkipTLSVerifyRegistries []string
	// RegistryTimeout bounds each registry request.
	RegistryTimeout time.Duration
	// MaxUncompressedSize, MaxImageLayers and MaxImageFiles bound an image's decompressed
	// layers, its layers and its files (0: no bound); larger ones are TooLarge.
	MaxUncompressedSize, MaxImageFiles int64
	MaxImageLayers                     int
	// RegistryPolicy says which registries and addresses registry traffic may reach.
	RegistryPolicy sbom.RegistryPolicy
	// PullSecretClusterRole is the ClusterRole each namespace's RoleBinding binds.
	PullSecretClusterRole string
	// FindingsRefreshInterval is how often a running workload's lastDetected is renewed.
	FindingsRefreshInterval time.Duration
	// Scanner* configure the scan Jobs of the job executor.
	ScannerImage, ScannerServiceAccount, ScannerCASecret, ScanReportURL string
	ScannerNodeSelector                                                 map[string]string
	ScannerRequestsCPU, ScannerRequestsMemory                           string
	ScannerLimitsCPU, ScannerLimitsMemory                               string
	// ScannerRequestsEphemeralStorage and ScannerLimitsEphemeralStorage bound the scan Jobs'
	// local storage (image layers are unpacked under /tmp); the limit also bounds their scratch
	// volume; empty means none.
	ScannerRequestsEphemeralStorage, ScannerLimitsEphemeralStorage string
	// ScannerPodTemplate is a file of executor.PodTemplate that shapes the scan Jobs' pods.
	ScannerPodTemplate string
	// CloudRegistryCredentials lets the node's or the workload's cloud identity authenticate to
	// ECR, GCR/Artifact Registry and ACR when no pull secret fits.
	CloudRegistryCredentials bool
	// MetricsWorkloadSeriesLimit bounds the series of vigil_vulnerability_workload_info; 0 turns
	// them off.
	MetricsWorkloadSeriesLimit int
	// PodSecurity maps a Pod Security Admission mode (enforce, audit, warn) to the level that
	// the manager labels its own namespace with at start; an empty level leaves the mode alone.
	PodSecurity map[string]string
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
	fs.StringVar(&options.WebhookClientCAFile, "webhook-client-ca-file", "",
		"CA bundle (PEM) of the API server's admission client certificate; when set, admission requests from a client without a certificate of that CA are refused (scan reports on the same port keep their token authentication).")
	fs.StringVar(&options.Namespace, "namespace", envOr("POD_NAMESPACE", "vigil-system"),
		"Namespace Vigil runs in (default $POD_NAMESPACE, else vigil-system); the webhook does not observe it.")
	fs.StringVar(&options.ServiceAccountName, "service-account-name", envOr("SERVICE_ACCOUNT_NAME", "vigil"),
		"The manager's service account (default $SERVICE_ACCOUNT_NAME, else vigil); the webhook skips its requests.")
	fs.IntVar(&options.WebhookConcurrency, "webhook-concurrency", 64,
		"Admission requests examined at once; beyond it requests are allowed without being examined, and the pod watch records their images later.")
	fs.StringVar(&options.SBOMDir, "sbom-dir", "/var/lib/vigil/sboms",
		"Folder of the stored SBOMs (a volume: a restarted manager scans nothing again).")
	fs.StringVar(&options.DatabaseDir, "db-dir", "/var/lib/vigil/db",
		"Vulnerability database root: the folder that holds 6/vulnerability.db, as grype's cache does.")
	fs.StringVar(&options.DatabaseListingURL, "db-listing-url", "https://grype.anchore.io/databases/v6/latest.json",
		"URL of the vulnerability database listing (grype's distribution format) to update from.")
	fs.StringVar(&options.DatabaseImportFile, "db-import-file", "",
		"Database archive to import at start and whenever it changes, instead of updating from --db-listing-url (air-gapped clusters).")
	fs.DurationVar(&options.DatabaseUpdateInterval, "db-update-interval", 6*time.Hour,
		"Time between vulnerability database checks.")
	fs.StringVar(&options.ScanExecutor, "scan-executor", "in-process",
		`Where scans run: "in-process" (the local demo, small clusters) or "job" (a Kubernetes Job per scan attempt of an image digest).`)
	fs.IntVar(&options.ScanConcurrency, "scan-concurrency", 2,
		"Scans in flight at once, in the manager (in-process) or as scan Jobs; waiting images are started fairly between namespaces.")
	fs.IntVar(&options.MatchConcurrency, "match-concurrency", 1,
		"SBOM matches that run at once in the manager; each large SBOM takes hundreds of MiB while it is matched.")
	fs.DurationVar(&options.Retention, "retention", 7*24*time.Hour,
		"How long an image that no running container uses keeps its ImageScan and stored SBOM; references that never resolve are collected after it too.")
	fs.Func("excluded-namespace", "Namespace that Vigil does not scan, report or set up, as its own (repeatable); the chart's excludedNamespaces.", func(v string) error {
		if v == "" {
			return errors.New("a namespace name is required")
		}
		options.ExcludedNamespaces = append(options.ExcludedNamespaces, v)
		return nil
	})
	fs.IntVar(&options.MaxImagesPerNamespace, "max-images-per-namespace", 500,
		"Distinct images recorded for one namespace within an hour; beyond it the namespace's new images wait (an Event on the namespace says so).")
	fs.BoolVar(&options.ScannerUserNamespace, "scanner-user-namespace", false,
		"Run scan pods in user namespaces of their own (hostUsers: false); the nodes must support user namespaces.")
	options.PodSecurity = map[string]string{}
	for _, mode := range []string{"enforce", "audit", "warn"} {
		fs.Func("pod-security-"+mode, fmt.Sprintf("Pod Security level (privileged, baseline, restricted) that the manager labels its own namespace with at start, as pod-security.kubernetes.io/%s; empty leaves the label alone.", mode), func(v string) error {
			if err := namespace.ValidatePodSecurityLevel(v); err != nil {
				return err
			}
			options.PodSecurity[mode] = v
			return nil
		})
	}
	fs.DurationVar(&options.ScanTimeout, "scan-timeout", 10*time.Minute, "Time one scan may take.")
	fs.IntVar(&options.ScanMaxAttempts, "scan-max-attempts", 5, "Attempts at scanning one image digest before it is Failed.")
	fs.DurationVar(&options.ScanRetryBackoff, "scan-retry-backoff", 30*time.Second,
		"Wait after a first failed scan attempt; it doubles after each further failure, up to 30 minutes.")
	fs.Int64Var(&options.MaxImageSize, "max-image-size", sbom.DefaultMaxImageSize, "Largest image scanned, compressed, in bytes (0: no bound); larger ones are TooLarge.")
	fs.Int64Var(&options.MaxUncompressedSize, "max-uncompressed-image-size", sbom.DefaultMaxUncompressedSize,
		"Largest image scanned, its layers decompressed together, in bytes (0: no bound); larger ones are TooLarge. Keep it below the scan Jobs' ephemeral storage limit.")
	fs.IntVar(&options.MaxImageLayers, "max-image-layers", sbom.DefaultMaxLayers, "Most layers of an image scanned (0: no bound); images with more are TooLarge.")
	fs.Int64Var(&options.MaxImageFiles, "max-image-files", sbom.DefaultMaxFiles,
		"Most files (tar entries of all layers) of an image scanned (0: no bound); images with more are TooLarge. Each costs scanner memory.")
	fs.Int64Var(&options.MaxSBOMSize, "max-sbom-size", 0, "Largest SBOM kept, in bytes (0: no bound); larger ones are TooLarge.")
	fs.StringVar(&options.Platform, "platform", "linux/amd64", "Platform scanned of multi-platform images.")
	fs.Func("plain-http-registry", "Registry host[:port] reached over plain HTTP (repeatable).", func(v string) error {
		options.PlainHTTPRegistries = append(options.PlainHTTPRegistries, v)
		return nil
	})
	fs.Func("insecure-skip-tls-verify-registry", "Registry host[:port] whose certificate is not verified (repeatable).", func(v string) error {
		options.SkipTLSVerifyRegistries = append(options.SkipTLSVerifyRegistries, v)
		return nil
	})
	fs.DurationVar(&options.RegistryTimeout, "registry-timeout", 30*time.Second, "Time each registry request may take.")
	fs.Func("registry-allow", "Registry host[:port] or *.domain that images may come from (repeatable); none given allows every registry not denied.", func(v string) error {
		options.RegistryPolicy.Allow = append(options.RegistryPolicy.Allow, v)
		return nil
	})
	fs.Func("registry-deny", "Registry host[:port] or *.domain never contacted (repeatable).", func(v string) error {
		options.RegistryPolicy.Deny = append(options.RegistryPolicy.Deny, v)
		return nil
	})
	options.RegistryPolicy.DenyNetworks = sbom.DefaultDenyNetworks()
	fs.Var(&networkList{list: &options.RegistryPolicy.DenyNetworks}, "registry-deny-network",
		`CIDR range that no registry connection may reach, checked on the resolved address of every connection (repeatable; the first use replaces the default; "" denies none). Add the cluster's Service range; add 127.0.0.0/8 and ::1/128 to deny loopback.`)
	fs.Var(&networkList{list: &options.RegistryPolicy.AllowNetworks}, "registry-allow-network",
		"CIDR range or address allowed inside the denied networks, for example an in-cluster registry's Service address (repeatable).")
	fs.StringVar(&options.PullSecretClusterRole, "pull-secret-cluster-role", "vigil-pull-secret-reader",
		"ClusterRole (get secrets and serviceaccounts) that Vigil binds in every namespace it scans.")
	fs.DurationVar(&options.FindingsRefreshInterval, "findings-refresh-interval", time.Hour,
		"How often the lastDetected time of a running workload is renewed; between renewals a steady cluster causes no writes.")
	fs.StringVar(&options.ScannerImage, "scanner-image", "ghcr.io/vigil-dev/vigil:latest", "Image of the scan Jobs (job executor); its entrypoint is the vigil command.")
	fs.StringVar(&options.ScannerServiceAccount, "scanner-service-account", "vigil-scanner",
		"Service account of the scan Jobs; it needs no permission, its token only authenticates the Jobs' reports.")
	fs.StringVar(&options.ScannerCASecret, "scanner-ca-secret", "vigil-webhook-tls",
		"Secret in Vigil's namespace whose ca.crt the scan Jobs trust for --scan-report-url.")
	fs.StringVar(&options.ScanReportURL, "scan-report-url", "https://vigil-webhook.vigil-system.svc:443/v1/scan-reports",
		"URL at which the scan Jobs reach the manager's report endpoint (the webhook server).")
	options.ScannerNodeSelector = map[string]string{}
	fs.Func("scanner-node-selector", "Node selector label of the scan Jobs' pods, key=value (repeatable).", func(v string) error {
		key, value, ok := strings.Cut(v, "=")
		if !ok || key == "" {
			return fmt.Errorf("%q is not key=value", v)
		}
		options.ScannerNodeSelector[key] = value
		return nil
	})
	fs.StringVar(&options.ScannerRequestsCPU, "scanner-requests-cpu", "100m", "CPU request of a scan Job; empty sets none.")
	fs.StringVar(&options.ScannerRequestsMemory, "scanner-requests-memory", "512Mi", "Memory request of a scan Job; empty sets none.")
	fs.StringVar(&options.ScannerLimitsCPU, "scanner-limits-cpu", "2", "CPU limit of a scan Job; empty sets none.")
	fs.StringVar(&options.ScannerLimitsMemory, "scanner-limits-memory", "1Gi",
		"Memory limit of a scan Job; a Job killed for exceeding it leaves its image TooLarge; empty sets none.")
	fs.StringVar(&options.ScannerRequestsEphemeralStorage, "scanner-requests-ephemeral-storage", "1Gi",
		"Ephemeral-storage request of a scan Job (image layers are unpacked in it); empty sets none.")
	fs.StringVar(&options.ScannerLimitsEphemeralStorage, "scanner-limits-ephemeral-storage", "10Gi",
		"Ephemeral-storage limit of a scan Job, and the size limit of its scratch volume; keep it above --max-uncompressed-image-size; empty sets none.")
	fs.StringVar(&options.ScannerPodTemplate, "scanner-pod-template", "",
		"File (YAML) that shapes the scan Jobs' pods: labels, annotations, imagePullSecrets, tolerations, affinity, priorityClassName, env, volumes, volumeMounts.")
	fs.BoolVar(&options.CloudRegistryCredentials, "cloud-registry-credentials", true,
		"When no pull secret fits, authenticate to ECR, GCR/Artifact Registry and ACR with the node's or the workload's cloud identity.")
	fs.IntVar(&options.MetricsWorkloadSeriesLimit, "metrics-workload-series-limit", 0,
		"Most series of vigil_vulnerability_workload_info (one per vulnerability and workload container, most severe first); 0 turns them off.")
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

// usageLine follows a command-line error.
const usageLine = "Usage: vigil-manager [flags] (see vigil-manager --help)"

// parse reads the command line into options; it returns flag.ErrHelp for -h and --help, after
// printing every flag.
func parse(args []string) (*Options, error) {
	options := &Options{}
	fs := newFlagSet(options)
	// Parse errors are reported by Main in one line; only --help prints every flag.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stderr)
		fs.Usage()
		return nil, err
	} else if err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if options.WebhookPort <= 0 || options.WebhookPort > 65535 {
		return nil, fmt.Errorf("--webhook-port %d is not a port number", options.WebhookPort)
	}
	if options.ScanExecutor != "in-process" && options.ScanExecutor != "job" {
		return nil, fmt.Errorf(`--scan-executor %q: use "in-process" or "job"`, options.ScanExecutor)
	}
	if options.ScanConcurrency <= 0 || options.ScanMaxAttempts <= 0 || options.MatchConcurrency <= 0 || options.MaxImagesPerNamespace <= 0 {
		return nil, errors.New("--scan-concurrency, --match-concurrency, --max-images-per-namespace and --scan-max-attempts must be positive")
	}
	if options.Retention <= 0 {
		return nil, errors.New("--retention must be positive")
	}
	if options.DatabaseUpdateInterval <= 0 || options.FindingsRefreshInterval <= 0 {
		return nil, errors.New("--db-update-interval and --findings-refresh-interval must be positive")
	}
	for flag, value := range map[string]string{
		"--scanner-requests-cpu": options.ScannerRequestsCPU, "--scanner-requests-memory": options.ScannerRequestsMemory,
		"--scanner-limits-cpu": options.ScannerLimitsCPU, "--scanner-limits-memory": options.ScannerLimitsMemory,
		"--scanner-requests-ephemeral-storage": options.ScannerRequestsEphemeralStorage,
		"--scanner-limits-ephemeral-storage":   options.ScannerLimitsEphemeralStorage,
	} {
		if value == "" {
			continue
		}
		if _, err := resource.ParseQuantity(value); err != nil {
			return nil, fmt.Errorf("%s %q is not a quantity", flag, value)
		}
	}
	if options.MaxImageSize < 0 || options.MaxUncompressedSize < 0 || options.MaxImageLayers < 0 || options.MaxImageFiles < 0 {
		return nil, errors.New("--max-image-size, --max-uncompressed-image-size, --max-image-layers and --max-image-files must not be negative")
	}
	if options.MetricsWorkloadSeriesLimit < 0 {
		return nil, errors.New("--metrics-workload-series-limit must not be negative")
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

// networkList is a repeatable flag of CIDR ranges whose first use replaces its default.
type networkList struct {
	list *[]netip.Prefix
	set  bool
}

func (n *networkList) String() string {
	if n.list == nil {
		return ""
	}
	values := make([]string, len(*n.list))
	for i, prefix := range *n.list {
		values[i] = prefix.String()
	}
	return strings.Join(values, ",")
}

func (n *networkList) Set(value string) error {
	prefixes, err := sbom.ParseNetworks(strings.Split(value, ","))
	if err != nil {
		return err
	}
	if !n.set {
		*n.list = nil
		n.set = true
	}
	*n.list = append(*n.list, prefixes...)
	return nil
}

// scannerResources are the scan Jobs' resources; an empty quantity sets none.
func (o *Options) scannerResources() corev1.ResourceRequirements {
	resources := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
	for _, q := range []struct {
		list  corev1.ResourceList
		name  corev1.ResourceName
		value string
	}{
		{resources.Requests, corev1.ResourceCPU, o.ScannerRequestsCPU},
		{resources.Requests, corev1.ResourceMemory, o.ScannerRequestsMemory},
		{resources.Requests, corev1.ResourceEphemeralStorage, o.ScannerRequestsEphemeralStorage},
		{resources.Limits, corev1.ResourceCPU, o.ScannerLimitsCPU},
		{resources.Limits, corev1.ResourceMemory, o.ScannerLimitsMemory},
		{resources.Limits, corev1.ResourceEphemeralStorage, o.ScannerLimitsEphemeralStorage},
	} {
		if q.value != "" {
			q.list[q.name] = resource.MustParse(q.value) // parse checked every quantity
		}
	}
	return resources
}

// scannerJobShape is the resources of the scan Jobs and the shaping of their pods, read from
// --scanner-pod-template: resources given there replace those of the --scanner-* flags.
func (o *Options) scannerJobShape() (corev1.ResourceRequirements, executor.PodTemplate, error) {
	if o.ScannerPodTemplate == "" {
		return o.scannerResources(), executor.PodTemplate{}, nil
	}
	template, err := executor.LoadPodTemplate(o.ScannerPodTemplate)
	if err != nil {
		return corev1.ResourceRequirements{}, template, err
	}
	if template.Resources != nil {
		return *template.Resources, template, nil
	}
	return o.scannerResources(), template, nil
}

// envOr is the value of the environment variable name, or fallback when it is empty.
func envOr(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}
