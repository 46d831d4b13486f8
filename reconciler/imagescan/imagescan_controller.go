package imagescan

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/pkg/metrics"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/reconciler/conflicts"
)

// Reasons of the Resolved, Scanned and SBOMStored conditions, and of the ImageScan's events;
// sbom.Explain gives the reasons of registry failures (AuthenticationFailed, ImageNotFound,
// RegistryUnreachable, RegistryDenied, RegistryError, TooLarge).
const (
	ReasonResolved             = "Resolved"
	ReasonAuthenticationFailed = sbom.ReasonAuthenticationFailed
	ReasonResolveFailed        = "ResolveFailed"
	ReasonDatabaseNotReady     = "DatabaseNotReady"
	ReasonScanning             = "Scanning"
	ReasonRetryScheduled       = "RetryScheduled"
	ReasonAttemptLost          = "AttemptLost"
	ReasonScanFailed           = "ScanFailed"
	ReasonTooLarge             = sbom.ReasonTooLarge
	ReasonOOMKilled            = "OOMKilled"
	ReasonStored               = "Stored"
	ReasonSBOMNotStored        = "SBOMNotStored"
	ReasonRescan               = "Rescan"
	ReasonMatched              = "Matched"
	ReasonMatchFailed          = "MatchFailed"
	ReasonMatchOutOfMemory     = "MatchOutOfMemory"
)

// resolveWorkers bounds the references resolved at once, maxResolvingPerNamespace of them
// for one namespace.
const resolveWorkers = 8

// maxMatchAttempts is how many matches of one SBOM may start without finishing (the manager
// died while matching, most likely for its memory) before the image ends TooLarge.
const maxMatchAttempts = 3

// SBOMStore is the part of the SBOM store the scan reconciler uses.
type SBOMStore interface {
	Has(digest string) bool
	Get(digest string) ([]byte, error)
}

// Database is the vulnerability database the SBOMs are matched against.
type Database interface {
	// Built is when the database in use was built; zero when none is loaded.
	Built() time.Time
	// Acquire returns a Matcher of the database in use and the function that releases it.
	Acquire() (*match.Matcher, func(), error)
}

// Reconciler scans each image digest once. It resolves recorded references to digests with the
// pull credentials of the workloads that use them, starts one scan attempt at a time per digest
// when the Dispatcher grants a slot, and matches the stored SBOM against the vulnerability
// database. Every step's outcome is written on the ImageScan's status before the next step
// starts: a restarted or new leader continues from the API alone, and repeats at most the
// attempt that was in flight.
type Reconciler struct {
	Client client.Client
	// APIReader reads workloads, service accounts and pull secrets one at a time, and
	// ImageScans whose cached copy may be behind, from the API server.
	APIReader client.Reader
	Events    events.EventRecorder
	Executor  executor.Executor
	// ExecutorKind names the executor in metrics: "in-process" or "job".
	ExecutorKind string
	SBOMs        SBOMStore
	Database     Database
	Dispatcher   *Dispatcher
	// Matches bounds the matches that run at once, first matches before re-matches.
	Matches *Gate
	// Registry configures registry access (plain HTTP, certificates, timeout) for resolving.
	Registry sbom.Options
	// MaxAttempts bounds the scan attempts of a digest; RetryBackoff is the wait after the first
	// failure, doubled after each further one up to MaxRetryBackoff.
	MaxAttempts     int32
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration

	// resolving bounds the resolutions in flight per namespace.
	resolving namespaceSlots
	// granted carries ImageScans that the Dispatcher granted a slot.
	granted chan event.TypedGenericEvent[*vigilv1alpha1.ImageScan]
}

// +kubebuilder:rbac:groups=vigil.dev,resources=imagescans,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=vigil.dev,resources=imagescans/status,verbs=get;update;patch

// SetupWithManager registers the reconciler as two controllers, one resolving references and
// one scanning and matching digests, and its Dispatcher; with watchJobs it also watches
// the scan Jobs of the job executor, through the metadata-only cache of Jobs that workload
// resolution uses too.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, watchJobs bool) error {
	r.granted = make(chan event.TypedGenericEvent[*vigilv1alpha1.ImageScan], 1024)
	r.Dispatcher.Due = r.due
	r.Dispatcher.wake = make(chan struct{}, 1)
	r.Dispatcher.start = func(name string) {
		scan := &vigilv1alpha1.ImageScan{}
		scan.Name = name
		r.granted <- event.TypedGenericEvent[*vigilv1alpha1.ImageScan]{Object: scan}
	}
	if err := mgr.Add(r.Dispatcher); err != nil {
		return fmt.Errorf("adding the scan dispatcher: %w", err)
	}
	// References are resolved by a controller of their own: resolving waits on a registry,
	// up to the registry timeout, and a registry that never answers must hold up no scan or
	// match, only, at worst, other references.
	isReference := func(o client.Object) bool { return o.(*vigilv1alpha1.ImageScan).Spec.Digest == "" }
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("imagescan-references").
		For(&vigilv1alpha1.ImageScan{}, builder.WithPredicates(predicate.NewPredicateFuncs(isReference))).
		WithOptions(controller.Options{MaxConcurrentReconciles: resolveWorkers}).
		Complete(r); err != nil {
		return fmt.Errorf("setting up the reference resolution: %w", err)
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("imagescans").
		For(&vigilv1alpha1.ImageScan{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool { return !isReference(o) }))).
		WatchesRawSource(source.Channel(r.granted, &handler.TypedEnqueueRequestForObject[*vigilv1alpha1.ImageScan]{}))
	if watchJobs {
		b = b.Watches(&batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(scanOfJob), builder.OnlyMetadata)
	}
	return b.Complete(r)
}

// scanOfJob maps a scan Job to the ImageScan of the digest it scans; other Jobs map to nothing.
func scanOfJob(_ context.Context, job client.Object) []reconcile.Request {
	digest := job.GetAnnotations()[executor.DigestAnnotation]
	if digest == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: vigilv1alpha1.ImageScanName(digest)}}}
}

// Reconcile moves one ImageScan forward. A write that conflicts with another writer's (the
// collector's renewal, a new reference, the cache behind this reconciler's own last write) is
// not an error to log: the ImageScan is looked at again on its newer copy.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return conflicts.Reconcile(ctx, req, "ImageScan", r.reconcile)
}

func (r *Reconciler) reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	scan := &vigilv1alpha1.ImageScan{}
	if err := r.Client.Get(ctx, req.NamespacedName, scan); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if scan.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	if scan.Spec.Digest == "" {
		return r.resolve(ctx, scan)
	}
	switch scan.Status.Phase {
	case vigilv1alpha1.ImageScanFailed, vigilv1alpha1.ImageScanTooLarge:
		if scannedCondition(scan).ObservedGeneration == scan.Generation {
			return ctrl.Result{}, nil
		}
		// New references since the final failure (another namespace, new pull secrets): a
		// fresh series of attempts.
		status := scan.Status.DeepCopy()
		status.Phase = vigilv1alpha1.ImageScanPending
		newSeries(status)
		status.MatchAttempts = 0
		setCondition(status, scan, vigilv1alpha1.ConditionScanned, metav1.ConditionFalse, ReasonRetryScheduled, "The image's references changed")
		return ctrl.Result{}, r.writeStatus(ctx, scan, status)
	case vigilv1alpha1.ImageScanScanned:
		return ctrl.Result{}, nil // a new database is the Rematcher's
	case vigilv1alpha1.ImageScanScanning:
		return r.scanning(ctx, scan)
	default:
		return r.pending(ctx, scan)
	}
}

// pending starts an attempt once the retry wait is over and the Dispatcher grants a slot.
func (r *Reconciler) pending(ctx context.Context, scan *vigilv1alpha1.ImageScan) (ctrl.Result, error) {
	if wait := r.retryWait(scan, time.Now()); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	if !r.Dispatcher.Take(scan.Name, scan.Status.Attempts+1) {
		r.Dispatcher.Trigger()
		return ctrl.Result{}, nil
	}
	digest := scan.Spec.Digest
	request := executor.Request{Digest: digest, ScanUID: scan.UID, Attempt: scan.Status.Attempts + 1}
	for _, reference := range scan.Spec.References {
		pinned, err := sbom.PinnedReference(reference.Image, digest)
		if err != nil {
			continue
		}
		request.Images = append(request.Images, executor.PinnedImage{Reference: pinned, Credentials: r.credentials(ctx, reference)})
	}
	if len(request.Images) == 0 {
		status := scan.Status.DeepCopy()
		status.Phase = vigilv1alpha1.ImageScanFailed
		setCondition(status, scan, vigilv1alpha1.ConditionScanned, metav1.ConditionFalse, ReasonScanFailed,
			fmt.Sprintf("No valid reference names %s", digest))
		if err := r.writeStatus(ctx, scan, status); err != nil {
			r.Dispatcher.Release(scan.Name)
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, nil
	}

	// The attempt is written before it starts: whoever reconciles next knows it is in flight.
	status := scan.Status.DeepCopy()
	status.Phase = vigilv1alpha1.ImageScanScanning
	status.Attempts = request.Attempt
	now := metav1.NewTime(time.Now())
	status.LastAttemptTime = &now
	setCondition(status, scan, vigilv1alpha1.ConditionSBOMStored, metav1.ConditionFalse, ReasonScanning,
		fmt.Sprintf("Attempt %d of %d", seriesAttempts(status), r.MaxAttempts))
	if scan.Status.Database == nil {
		setCondition(status, scan, vigilv1alpha1.ConditionScanned, metav1.ConditionFalse, ReasonScanning,
			fmt.Sprintf("Attempt %d of %d", seriesAttempts(status), r.MaxAttempts))
	}
	if err := r.writeStatus(ctx, scan, status); err != nil {
		// Not started: the slot stays this image's for its next reconcile (a conflict only
		// means the cache was behind).
		r.Dispatcher.Release(scan.Name)
		return ctrl.Result{}, err
	}
	if err := r.Executor.Submit(ctx, request); err != nil {
		// The attempt is written and will be found lost, then tried again.
		return ctrl.Result{}, fmt.Errorf("starting the scan of %s: %w", digest, err)
	}
	scanAttempts.Inc()
	r.Events.Eventf(scan, nil, corev1.EventTypeNormal, ReasonScanning, "Scan", "Scanning %s (attempt %d)", request.Images[0].Reference, request.Attempt)
	return ctrl.Result{}, nil
}

// scanning follows the attempt in flight: match its SBOM once stored, or find it lost.
func (r *Reconciler) scanning(ctx context.Context, scan *vigilv1alpha1.ImageScan) (ctrl.Result, error) {
	if meta.IsStatusConditionTrue(scan.Status.Conditions, vigilv1alpha1.ConditionSBOMStored) {
		if r.SBOMs.Has(scan.Spec.Digest) {
			return r.match(ctx, scan, true)
		}
		// The SBOM went to a replica that is gone: scan again.
		return ctrl.Result{}, r.requeueAttempt(ctx, scan, ReasonSBOMNotStored, "The scan's SBOM is not in this replica's store; scanning again", false)
	}
	state, err := r.Executor.Check(ctx, scan.Spec.Digest, scan.UID, scan.Status.Attempts)
	if err != nil {
		return ctrl.Result{}, err
	}
	switch state {
	case executor.Running:
		// The outcome is recorded on the status, which brings the ImageScan back here; a
		// periodic look catches an executor that ends without one.
		return ctrl.Result{RequeueAfter: time.Minute}, nil
	case executor.Ended:
		// Its outcome is recorded, or the cached copy is behind: look at the API server's.
		fresh := &vigilv1alpha1.ImageScan{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(scan), fresh); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		if fresh.ResourceVersion != scan.ResourceVersion {
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
	}
	// Lost: the replica that ran it died, or its Job is gone.
	return ctrl.Result{}, r.requeueAttempt(ctx, scan, ReasonAttemptLost,
		fmt.Sprintf("Attempt %d ended without an outcome; scanning again", scan.Status.Attempts), true)
}

// requeueAttempt moves a Scanning ImageScan back to Pending, so that the Dispatcher starts
// another attempt; counted says whether the lost attempt counts against MaxAttempts.
func (r *Reconciler) requeueAttempt(ctx context.Context, scan *vigilv1alpha1.ImageScan, reason, message string, counted bool) error {
	status := scan.Status.DeepCopy()
	status.Phase = vigilv1alpha1.ImageScanPending
	if !counted {
		// The attempt keeps its number (its Job, its report), but not its place in the budget.
		status.FirstAttempt = max(status.FirstAttempt, 1) + 1
	}
	if seriesAttempts(status) >= r.MaxAttempts {
		status.Phase = vigilv1alpha1.ImageScanFailed
		reason = ReasonScanFailed
		message = fmt.Sprintf("%s; no attempt left after %d", message, seriesAttempts(status))
	}
	status.LastAttemptTime = nil // no wait: nothing failed that waiting would mend
	setCondition(status, scan, vigilv1alpha1.ConditionSBOMStored, metav1.ConditionFalse, reason, message)
	if status.Phase == vigilv1alpha1.ImageScanFailed || scan.Status.Database == nil {
		setCondition(status, scan, vigilv1alpha1.ConditionScanned, metav1.ConditionFalse, reason, message)
	}
	if err := r.writeStatus(ctx, scan, status); err != nil {
		return err
	}
	scansLost.Inc()
	log.FromContext(ctx).Info("Scanning an image again", "imageScan", klog.KObj(scan), "reason", reason)
	return nil
}

// RecordOutcome persists the outcome of a scan attempt on its ImageScan: the executors and the
// report handler call it before they acknowledge anything. An outcome of an attempt that is not
// the one in flight is refused with executor.ErrStaleAttempt.
func (r *Reconciler) RecordOutcome(ctx context.Context, outcome executor.Outcome) error {
	var recorded *vigilv1alpha1.ImageScan
	var started time.Time
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		scan := &vigilv1alpha1.ImageScan{}
		if err := r.APIReader.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ImageScanName(outcome.Digest)}, scan); err != nil {
			if apierrors.IsNotFound(err) {
				return executor.ErrStaleAttempt
			}
			return fmt.Errorf("reading the ImageScan of %s: %w", outcome.Digest, err)
		}
		if scan.Status.Phase != vigilv1alpha1.ImageScanScanning || scan.Status.Attempts != outcome.Attempt ||
			meta.IsStatusConditionTrue(scan.Status.Conditions, vigilv1alpha1.ConditionSBOMStored) {
			return executor.ErrStaleAttempt
		}
		if scan.Status.LastAttemptTime != nil {
			started = scan.Status.LastAttemptTime.Time
		}
		status := r.outcomeStatus(scan, outcome, time.Now())
		scan.Status = *status
		if err := r.Client.Status().Update(ctx, scan); err != nil {
			return err
		}
		recorded = scan
		return nil
	})
	if err != nil {
		return err
	}
	if !started.IsZero() {
		metrics.ObserveScan(r.ExecutorKind, scanOutcomeOf(recorded), time.Since(started))
	}
	if outcome.Err != nil {
		condition := scannedCondition(recorded)
		r.Events.Eventf(recorded, nil, corev1.EventTypeWarning, condition.Reason, "Scan", "Scan attempt %d failed: %s",
			outcome.Attempt, condition.Message)
	}
	return nil
}

// outcomeStatus is the status of scan once outcome is recorded.
func (r *Reconciler) outcomeStatus(scan *vigilv1alpha1.ImageScan, outcome executor.Outcome, now time.Time) *vigilv1alpha1.ImageScanStatus {
	status := scan.Status.DeepCopy()
	at := metav1.NewTime(now)
	if outcome.Err == nil {
		setCondition(status, scan, vigilv1alpha1.ConditionSBOMStored, metav1.ConditionTrue, ReasonStored,
			fmt.Sprintf("Attempt %d stored the SBOM", outcome.Attempt))
		if status.SBOM == nil {
			status.SBOM = &vigilv1alpha1.SBOMSummary{}
		}
		if outcome.ImageSize > 0 {
			status.SBOM.ImageSize = outcome.ImageSize
		}
		scanned := metav1.NewTime(now.Truncate(time.Second))
		status.ScanTime = &scanned
		return status
	}
	status.LastAttemptTime = &at
	// The message is Vigil's own short explanation, never text that a registry sent.
	reason, message, final := explainFailure(outcome.Err)
	var tooLarge *sbom.TooLargeError
	var oomKilled *executor.OOMKilledError
	switch {
	case errors.As(outcome.Err, &tooLarge):
		status.Phase = vigilv1alpha1.ImageScanTooLarge
	case errors.As(outcome.Err, &oomKilled):
		status.Phase = vigilv1alpha1.ImageScanTooLarge
		reason = ReasonOOMKilled
	case seriesAttempts(status) >= r.MaxAttempts || final:
		status.Phase = vigilv1alpha1.ImageScanFailed
	default:
		status.Phase = vigilv1alpha1.ImageScanPending
		reason = ReasonRetryScheduled
	}
	setCondition(status, scan, vigilv1alpha1.ConditionSBOMStored, metav1.ConditionFalse, reason, message)
	setCondition(status, scan, vigilv1alpha1.ConditionScanned, metav1.ConditionFalse, reason, message)
	return status
}

// explainFailure explains a failed attempt and tells whether it is final. An attempt tries
// each of its references, each with its own namespace's credentials, and fails with the failure
// of each (joined): it is final only when every reference failed for a reason that no retry
// mends (credentials refused, a registry the policy denies), so that a bogus pull secret in
// one namespace never ends the scan of an image that another namespace can pull.
func explainFailure(err error) (reason, message string, final bool) {
	failures := []error{err}
	if joined, ok := err.(interface{ Unwrap() []error }); ok && len(joined.Unwrap()) > 0 {
		failures = joined.Unwrap()
	}
	final = true
	var messages []string
	for _, failure := range failures {
		failureReason, failureMessage := sbom.Explain(failure, ReasonScanFailed)
		if reason == "" {
			reason = failureReason
		}
		final = final && (failureReason == ReasonAuthenticationFailed || failureReason == sbom.ReasonRegistryDenied)
		if !slices.Contains(messages, failureMessage) {
			messages = append(messages, failureMessage)
		}
	}
	return reason, strings.Join(messages, "; "), final
}

// match matches the stored SBOM of scan against the database in use and records the findings;
// first says whether it is the image's first match (which goes before re-matches).
func (r *Reconciler) match(ctx context.Context, scan *vigilv1alpha1.ImageScan, first bool) (ctrl.Result, error) {
	built := r.Database.Built()
	if built.IsZero() {
		status := scan.Status.DeepCopy()
		setCondition(status, scan, vigilv1alpha1.ConditionScanned, metav1.ConditionFalse, ReasonDatabaseNotReady,
			"The SBOM is stored; no vulnerability database is loaded yet")
		return ctrl.Result{RequeueAfter: 10 * time.Second}, r.writeStatus(ctx, scan, status)
	}
	if scan.Status.MatchAttempts >= maxMatchAttempts {
		status := scan.Status.DeepCopy()
		status.Phase = vigilv1alpha1.ImageScanTooLarge
		setCondition(status, scan, vigilv1alpha1.ConditionScanned, metav1.ConditionFalse, ReasonMatchOutOfMemory,
			fmt.Sprintf("%d matches of the SBOM started and never finished: it is too large for the manager's memory; raise resources.manager.limits.memory",
				scan.Status.MatchAttempts))
		return ctrl.Result{}, r.writeStatus(ctx, scan, status)
	}
	release, err := r.Matches.Acquire(ctx, first)
	if err != nil {
		return ctrl.Result{}, err
	}
	defer release()
	// The match is written before it starts: a match that takes the manager down is counted.
	status := scan.Status.DeepCopy()
	status.MatchAttempts++
	if err := r.writeStatus(ctx, scan, status); err != nil {
		return ctrl.Result{}, err
	}

	syftJSON, err := r.SBOMs.Get(scan.Spec.Digest)
	if err != nil {
		return ctrl.Result{}, err
	}
	matcher, releaseDB, err := r.Database.Acquire()
	if err != nil {
		return ctrl.Result{RequeueAfter: 10 * time.Second}, nil
	}
	started := time.Now()
	result, err := matcher.ByCVE().Match(ctx, syftJSON)
	releaseDB()
	matchDuration.Observe(time.Since(started).Seconds())
	if err != nil {
		status := scan.Status.DeepCopy()
		status.MatchAttempts = 0
		status.Phase = vigilv1alpha1.ImageScanFailed
		setCondition(status, scan, vigilv1alpha1.ConditionScanned, metav1.ConditionFalse, ReasonMatchFailed, oneLine(err.Error(), 1000))
		return ctrl.Result{}, r.writeStatus(ctx, scan, status)
	}
	wasScanned := scan.Status.Phase == vigilv1alpha1.ImageScanScanned
	if err := r.writeMatch(ctx, scan, result, time.Now()); err != nil {
		return ctrl.Result{}, err
	}
	if !wasScanned {
		r.Events.Eventf(scan, nil, corev1.EventTypeNormal, ReasonMatched, "Match", "%d vulnerabilities in %d packages", len(result.Findings), result.Packages)
	}
	log.FromContext(ctx).V(1).Info("Matched image", "imageScan", klog.KObj(scan), "vulnerabilities", len(result.Findings))
	return ctrl.Result{}, nil
}

// writeMatch records a match's result on scan's status. A write that conflicts (the collector
// renewed the image's lastRunningTime, a new reference was added meanwhile) is made again on the
// API server's copy: failing the reconcile instead would match the SBOM again and count one more
// match attempt, and a few such conflicts would end the image TooLarge. It gives up, to be
// reconciled again, when that copy has moved on to another attempt or phase, or holds the
// match of another database (a previous leader's, finished late).
func (r *Reconciler) writeMatch(ctx context.Context, scan *vigilv1alpha1.ImageScan, result *match.Result, now time.Time) error {
	phase, attempt, database := scan.Status.Phase, scan.Status.Attempts, scan.Status.Database.DeepCopy()
	current := scan
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		if current == nil {
			fresh := &vigilv1alpha1.ImageScan{}
			if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(scan), fresh); err != nil {
				return fmt.Errorf("reading ImageScan %s again: %w", scan.Name, err)
			}
			if fresh.Status.Phase != phase || fresh.Status.Attempts != attempt {
				return fmt.Errorf("ImageScan %s moved on to attempt %d (%s) while its SBOM was matched", scan.Name, fresh.Status.Attempts, fresh.Status.Phase)
			}
			if !equality.Semantic.DeepEqual(fresh.Status.Database, database) {
				return fmt.Errorf("ImageScan %s was matched against another database while its SBOM was matched", scan.Name)
			}
			current = fresh
		}
		status := current.Status.DeepCopy()
		status.MatchAttempts = 0
		applyMatch(status, current, result, now)
		err := r.writeStatus(ctx, current, status)
		if apierrors.IsConflict(err) {
			current = nil
		}
		return err
	})
}

// applyMatch records a match's result on status: Scanned, with the findings, most severe first.
func applyMatch(status *vigilv1alpha1.ImageScanStatus, scan *vigilv1alpha1.ImageScan, result *match.Result, now time.Time) {
	status.Phase = vigilv1alpha1.ImageScanScanned
	imageSize := int64(0)
	if status.SBOM != nil {
		imageSize = status.SBOM.ImageSize
	}
	status.SBOM = &vigilv1alpha1.SBOMSummary{Distro: vigilv1alpha1.Truncate(result.Distro, 128), Packages: int32(result.Packages), ImageSize: imageSize}
	built := metav1.NewTime(result.Database.Built)
	previous := status.Database
	status.Database = &vigilv1alpha1.DatabaseVersion{SchemaVersion: result.Database.SchemaVersion, Built: built}
	matched := metav1.NewTime(now.Truncate(time.Second))
	if status.ScanTime == nil {
		status.ScanTime = &matched
	}
	if previous == nil || !previous.Built.Equal(&built) || status.MatchTime == nil {
		status.MatchTime = &matched
	}
	status.SeverityCounts = vigilv1alpha1.SeverityCounts{}
	status.Vulnerabilities = nil
	for _, f := range result.Findings {
		status.SeverityCounts.Add(vigilv1alpha1.Severity(f.Severity))
		if len(status.Vulnerabilities) < vigilv1alpha1.MaxImageScanVulnerabilities {
			status.Vulnerabilities = append(status.Vulnerabilities, imageVulnerabilityOf(f))
		}
	}
	message := fmt.Sprintf("%d vulnerabilities in %d packages", len(result.Findings), result.Packages)
	if len(result.Findings) > vigilv1alpha1.MaxImageScanVulnerabilities {
		message += fmt.Sprintf("; the %d most severe are listed", vigilv1alpha1.MaxImageScanVulnerabilities)
	}
	setCondition(status, scan, vigilv1alpha1.ConditionScanned, metav1.ConditionTrue, ReasonMatched, message)
}

// imageVulnerabilityOf is a finding as an ImageScan lists it.
func imageVulnerabilityOf(f match.Finding) vigilv1alpha1.ImageVulnerability {
	v := vigilv1alpha1.ImageVulnerability{
		ID: vigilv1alpha1.Truncate(f.ID, 64), Namespace: vigilv1alpha1.Truncate(f.Namespace, 64),
		Severity: vigilv1alpha1.Severity(f.Severity), Package: vigilv1alpha1.Truncate(f.Package.Name, 128),
		Type: vigilv1alpha1.Truncate(f.Package.Type, 32), Installed: vigilv1alpha1.Truncate(f.Package.Version, 64),
		FixState: vigilv1alpha1.FixState(f.FixState),
	}
	if len(f.FixedIn) > 0 {
		v.FixedIn = vigilv1alpha1.Truncate(f.FixedIn[0], 64)
	}
	if len(f.Package.Locations) > 0 {
		v.Location = vigilv1alpha1.Truncate(f.Package.Locations[0], 128)
	}
	for _, related := range f.Related {
		if len(v.Related) < vigilv1alpha1.MaxRelatedAdvisories {
			v.Related = append(v.Related, vigilv1alpha1.AdvisoryReference{
				ID: vigilv1alpha1.Truncate(related.ID, 64), Namespace: vigilv1alpha1.Truncate(related.Namespace, 64),
			})
		}
	}
	return v
}

// writeStatus writes status when it differs from the ImageScan's.
func (r *Reconciler) writeStatus(ctx context.Context, scan *vigilv1alpha1.ImageScan, status *vigilv1alpha1.ImageScanStatus) error {
	if equality.Semantic.DeepEqual(scan.Status, *status) {
		return nil
	}
	scan.Status = *status
	if err := r.Client.Status().Update(ctx, scan); err != nil {
		return fmt.Errorf("updating the status of ImageScan %s: %w", scan.Name, err)
	}
	return nil
}

func (r *Reconciler) backoff(attempts int32) time.Duration {
	wait := r.RetryBackoff
	for i := int32(1); i < attempts && wait < r.MaxRetryBackoff; i++ {
		wait *= 2
	}
	return min(wait, r.MaxRetryBackoff)
}

// retryWait is how long a failed ImageScan still waits before its next attempt.
func (r *Reconciler) retryWait(scan *vigilv1alpha1.ImageScan, now time.Time) time.Duration {
	attempts := seriesAttempts(&scan.Status)
	if scan.Status.LastAttemptTime == nil || attempts == 0 {
		return 0
	}
	return scan.Status.LastAttemptTime.Add(r.backoff(attempts)).Sub(now)
}

// seriesAttempts counts the attempts of status's current series, which has the whole budget of
// MaxAttempts.
func seriesAttempts(status *vigilv1alpha1.ImageScanStatus) int32 {
	return max(status.Attempts-max(status.FirstAttempt, 1)+1, 0)
}

// newSeries starts a new series of attempts with the next one. Attempt numbers are never
// reset: a number names an attempt's scan Job and the outcome it reports, and a previous
// series' Job (kept for a while after it ends) or late report must not pass for the new one's.
func newSeries(status *vigilv1alpha1.ImageScanStatus) {
	status.FirstAttempt = status.Attempts + 1
}

// due tells whether a Pending ImageScan may start an attempt now.
func (r *Reconciler) due(scan *vigilv1alpha1.ImageScan, now time.Time) bool {
	return r.retryWait(scan, now) <= 0
}

// setCondition sets a condition of status for scan's generation.
func setCondition(status *vigilv1alpha1.ImageScanStatus, scan *vigilv1alpha1.ImageScan, kind string, value metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: kind, Status: value, Reason: reason, Message: message, ObservedGeneration: scan.Generation,
	})
}

func resolvedCondition(scan *vigilv1alpha1.ImageScan) metav1.Condition {
	if condition := meta.FindStatusCondition(scan.Status.Conditions, vigilv1alpha1.ConditionResolved); condition != nil {
		return *condition
	}
	return metav1.Condition{}
}

func scannedCondition(scan *vigilv1alpha1.ImageScan) metav1.Condition {
	if condition := meta.FindStatusCondition(scan.Status.Conditions, vigilv1alpha1.ConditionScanned); condition != nil {
		return *condition
	}
	return metav1.Condition{}
}

// scanOutcomeOf names how an attempt ended, for the scan metrics.
func scanOutcomeOf(scan *vigilv1alpha1.ImageScan) metrics.ScanOutcome {
	switch {
	case meta.IsStatusConditionTrue(scan.Status.Conditions, vigilv1alpha1.ConditionSBOMStored):
		return metrics.ScanScanned
	case scan.Status.Phase == vigilv1alpha1.ImageScanPending:
		return metrics.ScanRetried
	case scan.Status.Phase == vigilv1alpha1.ImageScanTooLarge:
		return metrics.ScanTooLarge
	default:
		return metrics.ScanFailed
	}
}

// oneLine folds a message into one line of at most n bytes.
func oneLine(message string, n int) string {
	message = strings.Join(strings.Fields(message), " ")
	if len(message) > n {
		message = message[:n]
	}
	return message
}
