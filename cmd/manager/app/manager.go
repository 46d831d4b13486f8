// Package app is Vigil's manager command: it reads the flags and wires the manager in named steps.
package app

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/pkg/index"
	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/pkg/recorder"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/sbomstore"
	vigilscheme "github.com/vigil-dev/vigil/pkg/scheme"
	"github.com/vigil-dev/vigil/pkg/vulndb"
	"github.com/vigil-dev/vigil/reconciler/dbupdate"
	"github.com/vigil-dev/vigil/reconciler/findings"
	"github.com/vigil-dev/vigil/reconciler/imagescan"
	"github.com/vigil-dev/vigil/reconciler/namespace"
	"github.com/vigil-dev/vigil/reconciler/podimages"
	"github.com/vigil-dev/vigil/reconciler/retention"
	"github.com/vigil-dev/vigil/webhook"
)

// LeaderElectionID names the Lease that the manager's replicas elect their leader with.
const LeaderElectionID = "vigil-manager.vigil.dev"

// The manager's own permissions: leader election (its Lease lives in Vigil's namespace, so that
// the manager cannot take over another component's leader Lease), events, and the reviews that
// guard /metrics.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete,namespace=vigil-system
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Main runs the manager with the given command-line arguments until SIGTERM or SIGINT, and returns
// the process exit code: 0 after a clean stop or --help, 1 when the manager fails, 2 for bad flags.
func Main(args []string) int {
	options, err := parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vigil-manager: %v\n%s\n", err, usageLine)
		return 2
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&options.Zap)))
	log := ctrl.Log.WithName("setup")

	ctx := ctrl.SetupSignalHandler()
	if err := run(ctx, options); err != nil {
		log.Error(err, "Manager stopped with an error")
		return 1
	}
	log.Info("Manager stopped")
	return 0
}

func run(ctx context.Context, options *Options) error {
	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("loading the Kubernetes client configuration: %w", err)
	}
	mgr, err := newManager(restConfig, options)
	if err != nil {
		return err
	}
	if err := setupChecks(mgr); err != nil {
		return err
	}
	if err := setupIndexes(mgr); err != nil {
		return err
	}
	recorder, err := setupWebhooks(mgr, options)
	if err != nil {
		return err
	}
	// After each database swap the Vulnerabilities take their details from the new database,
	// and every stored SBOM is matched again, no image pulled.
	var onSwap func()
	database, err := vulndb.NewStore(vulndb.Options{
		Root: options.DatabaseDir, ListingURL: options.DatabaseListingURL, Timeout: 10 * time.Minute,
		OnSwap: func(match.Database) {
			if onSwap != nil {
				onSwap()
			}
		},
	})
	if err != nil {
		return fmt.Errorf("opening the vulnerability database: %w", err)
	}
	defer database.Close()
	if err := setupMetrics(mgr, options, database); err != nil {
		return err
	}
	openShift, err := namespace.ServesOpenShiftProjects(restConfig)
	if err != nil {
		return err
	}
	if onSwap, err = setupReconcilers(mgr, options, recorder, database, openShift); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("Starting manager", "leaderElection", options.LeaderElect,
		"webhookPort", options.WebhookPort, "metrics", options.MetricsBindAddress)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the manager: %w", err)
	}
	return nil
}

func newManager(restConfig *rest.Config, options *Options) (manager.Manager, error) {
	scheme, err := vigilscheme.New()
	if err != nil {
		return nil, err
	}
	var tlsOptions []func(*tls.Config)
	if !options.EnableHTTP2 {
		// HTTP/2 is off by default: its Rapid Reset and stream-cancellation weaknesses
		// (CVE-2023-44487, CVE-2023-39325) must not reach the webhook or metrics servers.
		tlsOptions = append(tlsOptions, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}

	metricsOptions := metricsserver.Options{
		BindAddress:   options.MetricsBindAddress,
		SecureServing: options.SecureMetrics,
		CertDir:       options.MetricsCertDir,
		TLSOpts:       tlsOptions,
	}
	if options.SecureMetrics {
		metricsOptions.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	webhookServer, err := newWebhookServer(options, tlsOptions)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOptions,
		WebhookServer:                 webhookServer,
		HealthProbeBindAddress:        options.HealthProbeBindAddress,
		LeaderElection:                options.LeaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       cmp.Or(options.LeaderElectionNamespace, options.Namespace),
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &options.GracefulShutdownTimeout,
		Cache: cache.Options{
			// Pods are cached cluster-wide; their managed fields are never read.
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				// Only the RoleBindings Vigil keeps, not every RoleBinding of the cluster: selected
				// by name too, since the manager may read RoleBindings of that name only.
				&rbacv1.RoleBinding{}: {
					Label: labels.SelectorFromSet(labels.Set{namespace.ManagedByLabel: namespace.ManagedByValue}),
					Field: fields.OneTermEqualSelector("metadata.name", namespace.RoleBindingName),
				},
			},
		},
		Client: client.Options{
			Cache: &client.CacheOptions{
				// Secrets are never cached: a cache would need a cluster-wide list and watch of
				// every Secret. Pull secrets are read one at a time, only in namespaces that
				// Vigil has set up.
				DisableFor: []client.Object{&corev1.Secret{}},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	return mgr, nil
}

// newWebhookServer returns the server of the admission webhook and the scan reports. With
// --webhook-client-ca-file it asks clients for a certificate and verifies it against that CA.
func newWebhookServer(options *Options, tlsOptions []func(*tls.Config)) (ctrlwebhook.Server, error) {
	if options.WebhookClientCAFile != "" {
		clientCertificates, err := webhook.ClientCertificateTLS(options.WebhookClientCAFile)
		if err != nil {
			return nil, err
		}
		tlsOptions = append(slices.Clip(tlsOptions), clientCertificates)
	}
	return ctrlwebhook.NewServer(ctrlwebhook.Options{
		Host:    options.WebhookHost,
		Port:    options.WebhookPort,
		CertDir: options.WebhookCertDir,
		TLSOpts: tlsOptions,
	}), nil
}

// admissionHandler guards the observer: with --webhook-client-ca-file, only clients that
// presented a certificate of that CA (the API server) reach it.
func admissionHandler(options *Options, observer http.Handler) http.Handler {
	if options.WebhookClientCAFile == "" {
		return observer
	}
	return webhook.RequireClientCertificate(observer)
}

// setupChecks adds the probes: healthz answers while the process runs, readyz once the webhook
// server serves, so that no admission request reaches a replica before it can answer.
func setupChecks(mgr manager.Manager) error {
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	return nil
}

// setupWebhooks registers the observe-only admission webhook and the Recorder it feeds; both run
// on every replica.
func setupWebhooks(mgr manager.Manager, options *Options) (*recorder.Recorder, error) {
	recorderOptions := recorder.DefaultOptions()
	recorderOptions.NamespaceImages = options.MaxImagesPerNamespace
	images := recorder.New(mgr.GetClient(), mgr.GetAPIReader(), mgr.GetEventRecorder("vigil"), recorderOptions)
	if err := mgr.Add(images); err != nil {
		return nil, fmt.Errorf("adding the image recorder: %w", err)
	}
	imageScans, err := mgr.GetCache().GetInformer(context.Background(), &vigilv1alpha1.ImageScan{})
	if err != nil {
		return nil, fmt.Errorf("getting the ImageScan informer: %w", err)
	}
	if err := images.ForgetDeleted(imageScans); err != nil {
		return nil, err
	}
	observer := webhook.NewImageObserver(images, options.Namespace, options.ServiceAccountName, options.WebhookConcurrency)
	mgr.GetWebhookServer().Register(webhook.Path, admissionHandler(options, observer))
	return images, nil
}

// setupIndexes registers the field indexes the reconcilers query, and sets up the metadata-only
// caches of ReplicaSets and Jobs so that workload resolution never caches whole objects.
func setupIndexes(mgr manager.Manager) error {
	if err := index.Setup(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return err
	}
	for _, gvk := range []schema.GroupVersionKind{
		appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), batchv1.SchemeGroupVersion.WithKind("Job"),
	} {
		metadata := &metav1.PartialObjectMetadata{}
		metadata.SetGroupVersionKind(gvk)
		if _, err := mgr.GetCache().GetInformer(context.Background(), metadata); err != nil {
			return fmt.Errorf("setting up the metadata cache of %s: %w", gvk.Kind, err)
		}
	}
	return nil
}

// setupReconcilers registers the reconcilers, which run on the elected leader: pod images,
// scans, re-matches, findings, retention, namespace setup and database updates. It returns what
// to do when the database changes.
func setupReconcilers(mgr manager.Manager, options *Options, images *recorder.Recorder,
	database *vulndb.Store, openShift bool) (func(), error) {
	// One setting, honoured everywhere: the webhook's namespace selector, the pod watch, the
	// findings and the namespace setup.
	excluded := sets.New(append(options.ExcludedNamespaces, options.Namespace)...)
	podImages := &podimages.Reconciler{Client: mgr.GetClient(), Recorder: images, ExcludedNamespaces: excluded}
	if err := podImages.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the pod images reconciler: %w", err)
	}

	sboms, err := sbomstore.Open(options.SBOMDir)
	if err != nil {
		return nil, err
	}
	vulnerabilities := &findings.Reconciler{
		Client: mgr.GetClient(), Index: findings.NewIndex(), Describer: database, ExcludedNamespaces: excluded,
		RefreshInterval: options.FindingsRefreshInterval,
	}
	registry := sbom.Options{
		Platform: options.Platform, Timeout: options.RegistryTimeout, MaxImageSize: options.MaxImageSize, MaxSBOMSize: options.MaxSBOMSize,
		Registries:          sbom.RegistryAccessOf(options.PlainHTTPRegistries, options.SkipTLSVerifyRegistries),
		MaxUncompressedSize: options.MaxUncompressedSize, MaxLayers: options.MaxImageLayers, MaxFiles: options.MaxImageFiles,
		Policy: options.RegistryPolicy, NoCloudCredentials: !options.CloudRegistryCredentials,
	}
	scans := &imagescan.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Events: mgr.GetEventRecorder("vigil"),
		SBOMs: sboms, Database: database, Registry: registry, ExecutorKind: options.ScanExecutor,
		Dispatcher:  &imagescan.Dispatcher{Reader: mgr.GetClient(), Concurrency: options.ScanConcurrency},
		Matches:     imagescan.NewGate(options.MatchConcurrency),
		MaxAttempts: int32(options.ScanMaxAttempts), RetryBackoff: options.ScanRetryBackoff, MaxRetryBackoff: 30 * time.Minute,
	}
	if options.ScanExecutor == "job" {
		resources, podTemplate, err := options.scannerJobShape()
		if err != nil {
			return nil, err
		}
		scans.Executor = executor.NewJobs(mgr.GetClient(), mgr.GetAPIReader(), executor.JobOptions{
			Namespace: options.Namespace, Image: options.ScannerImage, ServiceAccountName: options.ScannerServiceAccount,
			NodeSelector: options.ScannerNodeSelector, ReportURL: options.ScanReportURL, CASecretName: options.ScannerCASecret,
			Scan: registry, Timeout: options.ScanTimeout, UserNamespace: options.ScannerUserNamespace,
			Resources: resources, PodTemplate: podTemplate,
		}, scans)
		elected := mgr.Elected()
		mgr.GetWebhookServer().Register(executor.ReportPath, &executor.ReportHandler{
			Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: options.Namespace,
			ServiceAccountName: options.ScannerServiceAccount, SBOMs: sboms, Outcomes: scans,
			IsLeader: func() bool {
				select {
				case <-elected:
					return true
				default:
					return false
				}
			},
			MaxSBOMBytes: cmp.Or(options.MaxSBOMSize, 512<<20),
		})
	} else {
		scans.Executor = executor.NewInProcess(sboms, registry, options.ScanConcurrency, options.ScanTimeout, scans)
	}
	if err := scans.SetupWithManager(mgr, options.ScanExecutor == "job"); err != nil {
		return nil, fmt.Errorf("setting up the scan reconciler: %w", err)
	}
	rematcher := imagescan.NewRematcher(scans, mgr.GetClient())
	if err := mgr.Add(rematcher); err != nil {
		return nil, fmt.Errorf("adding the re-matcher: %w", err)
	}
	if err := vulnerabilities.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the findings reconciler: %w", err)
	}
	collector := &retention.Collector{Client: mgr.GetClient(), SBOMs: sboms, Retention: options.Retention}
	if err := mgr.Add(collector); err != nil {
		return nil, fmt.Errorf("adding the retention collector: %w", err)
	}

	namespaces := &namespace.Reconciler{
		Client: mgr.GetClient(), ClusterRoleName: options.PullSecretClusterRole,
		ServiceAccountName: options.ServiceAccountName, Namespace: options.Namespace, ExcludedNamespaces: excluded,
	}
	if err := namespaces.SetupWithManager(mgr, openShift); err != nil {
		return nil, fmt.Errorf("setting up the namespace reconciler: %w", err)
	}
	if len(options.PodSecurity) > 0 {
		podSecurity := &namespace.PodSecurity{
			Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Events: mgr.GetEventRecorder("vigil"),
			Namespace: options.Namespace, Levels: options.PodSecurity,
		}
		if err := mgr.Add(podSecurity); err != nil {
			return nil, fmt.Errorf("adding the Pod Security labels of Vigil's namespace: %w", err)
		}
	}

	updater := &dbupdate.Updater{Store: database, Interval: options.DatabaseUpdateInterval, ImportFile: options.DatabaseImportFile}
	if err := mgr.Add(updater); err != nil {
		return nil, fmt.Errorf("adding the database updater: %w", err)
	}
	return func() {
		rematcher.DatabaseChanged()
		vulnerabilities.DatabaseChanged()
	}, nil
}
