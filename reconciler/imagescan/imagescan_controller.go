package imagescan

import (
	"context"
	"errors"
	"fmt"
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
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/executor"
	"github.com/vigil-dev/vigil/pkg/match"
	"github.com/vigil-dev/vigil/pkg/sbom"
	"github.com/vigil-dev/vigil/pkg/sbomstore"
	"github.com/vigil-dev/vigil/pkg/vulndb"
)

// Reasons of the Resolved and Scanned conditions, and of the ImageScan's events.
const (
	ReasonResolved             = "Resolved"
	ReasonAuthenticationFailed = "AuthenticationFailed"
	ReasonImageNotFound        = "ImageNotFound"
	ReasonRegistryUnreachable  = "RegistryUnreachable"
	ReasonResolveFailed        = "ResolveFailed"
	ReasonDatabaseNotReady     = "DatabaseNotReady"
	ReasonScanning             = "Scanning"
	ReasonRetryScheduled       = "RetryScheduled"
	ReasonScanFailed           = "ScanFailed"
	ReasonTooLarge             = "TooLarge"
	ReasonOOMKilled            = "OOMKilled"
	ReasonMatched              = "Matched"
	ReasonMatchFailed          = "MatchFailed"
)

// FindingsPublisher receives the findings of every scanned image.
type FindingsPublisher interface {
	// SetImage publishes the findings of digest and returns the Vulnerability names they affect.
	SetImage(digest, reference string, findings []match.Finding) []string
	// HasImage tells whether findings of digest were published.
	HasImage(digest string) bool
}

// Reconciler scans each image digest once. It resolves recorded references to digests with the
// pull credentials of the namespaces that use them, hands each digest to the Executor once,
// matches the stored SBOM against the vulnerability database (again after every database
// swap, without pulling the image), records the result on the ImageScan, and publishes the
// findings to the Vulnerability reconciler.
type Reconciler struct {
	Client client.Client
	// APIReader reads pull secrets and service accounts one at a time, uncached.
	APIReader client.Reader
	Events    events.EventRecorder
	Executor  executor.Executor
	SBOMs     *sbomstore.Store
	Database  *vulndb.Store
	Findings  FindingsPublisher
	// Changed asks the Vulnerability reconciler to look at names again.
	Changed func(names []string)
	// Registry configures registry access (plain HTTP, certificates, timeout) for resolving.
	Registry sbom.Options
	// MaxAttempts bounds the scan attempts of a digest; RetryBackoff is the wait after the first
	// failure, doubled after each further one up to MaxRetryBackoff.
	MaxAttempts     int32
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration

	// wake carries ImageScans to look at again: a finished scan, a database swap.
	wake chan event.TypedGenericEvent[*vigilv1alpha1.ImageScan]
}

// +kubebuilder:rbac:groups=vigil.dev,resources=imagescans,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=vigil.dev,resources=imagescans/status,verbs=get;update;patch

// SetupWithManager registers the reconciler; with watchJobs it also watches the scan Jobs of the
// job executor, through the metadata-only cache of Jobs that workload resolution uses too.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, watchJobs bool) error {
	r.wake = make(chan event.TypedGenericEvent[*vigilv1alpha1.ImageScan], 1024)
	b := ctrl.NewControllerManagedBy(mgr).
		Named("imagescans").
		For(&vigilv1alpha1.ImageScan{}).
		WatchesRawSource(source.Channel(r.wake, &handler.TypedEnqueueRequestForObject[*vigilv1alpha1.ImageScan]{}))
	if watchJobs {
		b = b.Watches(&batchv1.Job{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, job client.Object) []reconcile.Request {
			digest := job.GetAnnotations()[executor.DigestAnnotation]
			if digest == "" {
				return nil
			}
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: vigilv1alpha1.ImageScanName(digest)}}}
		}), builder.OnlyMetadata)
	}
	return b.Complete(r)
}

// Wake asks the reconciler to look at the ImageScan of digest again; the executor calls it when
// a scan ends.
func (r *Reconciler) Wake(digest string) {
	scan := &vigilv1alpha1.ImageScan{}
	scan.Name = vigilv1alpha1.ImageScanName(digest)
	r.wake <- event.TypedGenericEvent[*vigilv1alpha1.ImageScan]{Object: scan}
}

// WakeAll asks the reconciler to look at every ImageScan again; it runs after a database swap,
// so that every stored SBOM is matched against the new database.
func (r *Reconciler) WakeAll(ctx context.Context) error {
	scans := &vigilv1alpha1.ImageScanList{}
	if err := r.Client.List(ctx, scans); err != nil {
		return fmt.Errorf("listing ImageScans: %w", err)
	}
	for i := range scans.Items {
		r.wake <- event.TypedGenericEvent[*vigilv1alpha1.ImageScan]{Object: &scans.Items[i]}
	}
	return nil
}

// Reconcile moves one ImageScan forward.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
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
	return r.scan(ctx, scan)
}

// resolve resolves a recorded reference to its digest, moves its references to the digest's
// ImageScan and deletes the reference's own.
func (r *Reconciler) resolve(ctx context.Context, scan *vigilv1alpha1.ImageScan) (ctrl.Result, error) {
	if scan.Status.Phase == vigilv1alpha1.ImageScanFailed && resolvedCondition(scan).ObservedGeneration == scan.Generation {
		return ctrl.Result{}, nil
	}
	if wait := r.retryWait(scan); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	var failures []error
	resolved := ""
	for _, reference := range scan.Spec.References {
		options := r.Registry
		options.Credentials = r.credentials(ctx, reference)
		digest, err := sbom.Resolve(ctx, reference.Image, options)
		if err != nil {
			failures = append(failures, err)
			continue
		}
		resolved = digest
		break
	}
	if resolved == "" {
		return r.resolveFailed(ctx, scan, errors.Join(failures...))
	}

	target := &vigilv1alpha1.ImageScan{}
	err := r.Client.Get(ctx, client.ObjectKey{Name: vigilv1alpha1.ImageScanName(resolved)}, target)
	switch {
	case apierrors.IsNotFound(err):
		target = &vigilv1alpha1.ImageScan{
			ObjectMeta: metav1.ObjectMeta{Name: vigilv1alpha1.ImageScanName(resolved)},
			Spec:       vigilv1alpha1.ImageScanSpec{Digest: resolved, References: scan.Spec.References},
		}
		if err := r.Client.Create(ctx, target); err != nil {
			return ctrl.Result{}, fmt.Errorf("creating ImageScan %s: %w", target.Name, err)
		}
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading ImageScan %s: %w", target.Name, err)
	default:
		changed := false
		for _, reference := range scan.Spec.References {
			changed = target.Spec.AddReference(reference) || changed
		}
		if changed {
			if err := r.Client.Update(ctx, target); err != nil {
				return ctrl.Result{}, fmt.Errorf("adding references to ImageScan %s: %w", target.Name, err)
			}
		}
	}
	r.Events.Eventf(target, nil, corev1.EventTypeNormal, ReasonResolved, "Resolve", "Resolved %s to %s", scan.Spec.References[0].Image, resolved)
	if err := r.Client.Delete(ctx, scan); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("deleting the resolved ImageScan %s: %w", scan.Name, err)
	}
	log.FromContext(ctx).V(1).Info("Resolved image reference", "image", scan.Spec.References[0].Image, "digest", resolved)
	return ctrl.Result{}, nil
}

func (r *Reconciler) resolveFailed(ctx context.Context, scan *vigilv1alpha1.ImageScan, err error) (ctrl.Result, error) {
	reason := failureReason(err, ReasonResolveFailed)
	status := scan.Status.DeepCopy()
	if resolvedCondition(scan).ObservedGeneration != scan.Generation {
		status.Attempts = 0 // new references since the last failure: a fresh series of attempts
	}
	status.Attempts++
	now := metav1.NewTime(time.Now())
	status.LastAttemptTime = &now
	final := status.Attempts >= r.MaxAttempts
	status.Phase = vigilv1alpha1.ImageScanPending
	if final {
		status.Phase = vigilv1alpha1.ImageScanFailed
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: vigilv1alpha1.ConditionResolved, Status: metav1.ConditionFalse, Reason: reason,
		Message: oneLine(err.Error(), 1000), ObservedGeneration: scan.Generation,
	})
	if err := r.writeStatus(ctx, scan, status); err != nil {
		return ctrl.Result{}, err
	}
	r.Events.Eventf(scan, nil, corev1.EventTypeWarning, reason, "Resolve", "Could not resolve %s: %s", scan.Spec.References[0].Image, oneLine(err.Error(), 500))
	if final {
		// A new reference (new pull secrets, another namespace) changes the spec and tries again.
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: r.backoff(status.Attempts)}, nil
}

// scan moves a digest's ImageScan forward: match a stored SBOM, record a finished scan, or
// start one.
func (r *Reconciler) scan(ctx context.Context, scan *vigilv1alpha1.ImageScan) (ctrl.Result, error) {
	digest := scan.Spec.Digest
	if outcome, ok := r.Executor.TakeOutcome(ctx, digest); ok && outcome.Err != nil {
		return r.scanFailed(ctx, scan, outcome.Err)
	}
	if r.SBOMs.Has(digest) {
		return r.match(ctx, scan)
	}
	final := scan.Status.Phase == vigilv1alpha1.ImageScanFailed || scan.Status.Phase == vigilv1alpha1.ImageScanTooLarge
	if final && scannedCondition(scan).ObservedGeneration == scan.Generation {
		return ctrl.Result{}, nil
	}
	if r.Executor.Running(ctx, digest) {
		return ctrl.Result{}, nil
	}
	if scannedCondition(scan).Reason == ReasonRetryScheduled {
		if wait := r.retryWait(scan); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil
		}
	}

	request := executor.Request{Digest: digest}
	for _, reference := range scan.Spec.References {
		pinned, err := sbom.PinnedReference(reference.Image, digest)
		if err != nil {
			continue
		}
		request.Images = append(request.Images, executor.PinnedImage{Reference: pinned, Credentials: r.credentials(ctx, reference)})
	}
	if len(request.Images) == 0 {
		return r.scanFailed(ctx, scan, fmt.Errorf("no valid reference names %s", digest))
	}
	if err := r.Executor.Submit(ctx, request); err != nil {
		return ctrl.Result{}, fmt.Errorf("starting the scan of %s: %w", digest, err)
	}
	status := scan.Status.DeepCopy()
	status.Phase = vigilv1alpha1.ImageScanScanning
	if scan.Status.Phase == vigilv1alpha1.ImageScanFailed || scan.Status.Phase == vigilv1alpha1.ImageScanTooLarge {
		status.Attempts = 0 // the spec changed since the final failure: a fresh series of attempts
	}
	status.Attempts++
	now := metav1.NewTime(time.Now())
	status.LastAttemptTime = &now
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: vigilv1alpha1.ConditionScanned, Status: metav1.ConditionFalse, Reason: ReasonScanning,
		Message: fmt.Sprintf("Attempt %d of %d", status.Attempts, r.MaxAttempts), ObservedGeneration: scan.Generation,
	})
	if err := r.writeStatus(ctx, scan, status); err != nil {
		return ctrl.Result{}, err
	}
	r.Events.Eventf(scan, nil, corev1.EventTypeNormal, ReasonScanning, "Scan", "Scanning %s (attempt %d)", request.Images[0].Reference, status.Attempts)
	return ctrl.Result{}, nil
}

func (r *Reconciler) scanFailed(ctx context.Context, scan *vigilv1alpha1.ImageScan, err error) (ctrl.Result, error) {
	reason := failureReason(err, ReasonScanFailed)
	status := scan.Status.DeepCopy()
	now := metav1.NewTime(time.Now())
	status.LastAttemptTime = &now
	var tooLarge *sbom.TooLargeError
	var oomKilled *executor.OOMKilledError
	switch {
	case errors.As(err, &tooLarge):
		status.Phase = vigilv1alpha1.ImageScanTooLarge
	case errors.As(err, &oomKilled):
		status.Phase = vigilv1alpha1.ImageScanTooLarge
		reason = ReasonOOMKilled
	case status.Attempts >= r.MaxAttempts || reason == ReasonAuthenticationFailed:
		status.Phase = vigilv1alpha1.ImageScanFailed
	default:
		status.Phase = vigilv1alpha1.ImageScanPending
		reason = ReasonRetryScheduled
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: vigilv1alpha1.ConditionScanned, Status: metav1.ConditionFalse, Reason: reason,
		Message: oneLine(err.Error(), 1000), ObservedGeneration: scan.Generation,
	})
	if err := r.writeStatus(ctx, scan, status); err != nil {
		return ctrl.Result{}, err
	}
	r.Events.Eventf(scan, nil, corev1.EventTypeWarning, reason, "Scan", "Scan attempt %d failed: %s", status.Attempts, oneLine(err.Error(), 500))
	if status.Phase == vigilv1alpha1.ImageScanPending {
		return ctrl.Result{RequeueAfter: r.backoff(status.Attempts)}, nil
	}
	return ctrl.Result{}, nil
}

// match matches the stored SBOM of a digest against the database in use, unless the ImageScan
// already records that database and its findings are published.
func (r *Reconciler) match(ctx context.Context, scan *vigilv1alpha1.ImageScan) (ctrl.Result, error) {
	digest := scan.Spec.Digest
	database := r.Database.Status().Database
	if database.SchemaVersion == "" {
		status := scan.Status.DeepCopy()
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{
			Type: vigilv1alpha1.ConditionScanned, Status: metav1.ConditionFalse, Reason: ReasonDatabaseNotReady,
			Message: "The SBOM is stored; no vulnerability database is loaded yet", ObservedGeneration: scan.Generation,
		})
		return ctrl.Result{RequeueAfter: 10 * time.Second}, r.writeStatus(ctx, scan, status)
	}
	current := scan.Status.Database
	if scan.Status.Phase == vigilv1alpha1.ImageScanScanned && current != nil &&
		current.Built.Equal(&metav1.Time{Time: database.Built}) && r.Findings.HasImage(digest) {
		return ctrl.Result{}, nil
	}

	syftJSON, err := r.SBOMs.Get(digest)
	if err != nil {
		return ctrl.Result{}, err
	}
	matcher, release, err := r.Database.Acquire()
	if err != nil {
		return ctrl.Result{RequeueAfter: 10 * time.Second}, nil
	}
	result, err := matcher.ByCVE().Match(ctx, syftJSON)
	release()
	if err != nil {
		status := scan.Status.DeepCopy()
		status.Phase = vigilv1alpha1.ImageScanFailed
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{
			Type: vigilv1alpha1.ConditionScanned, Status: metav1.ConditionFalse, Reason: ReasonMatchFailed,
			Message: oneLine(err.Error(), 1000), ObservedGeneration: scan.Generation,
		})
		return ctrl.Result{}, r.writeStatus(ctx, scan, status)
	}

	status := scan.Status.DeepCopy()
	status.Phase = vigilv1alpha1.ImageScanScanned
	status.SBOM = &vigilv1alpha1.SBOMSummary{Distro: vigilv1alpha1.Truncate(result.Distro, 128), Packages: int32(result.Packages)}
	if scan.Status.SBOM != nil {
		status.SBOM.ImageSize = scan.Status.SBOM.ImageSize
	}
	built := metav1.NewTime(result.Database.Built)
	status.Database = &vigilv1alpha1.DatabaseVersion{SchemaVersion: result.Database.SchemaVersion, Built: built}
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	if status.ScanTime == nil {
		status.ScanTime = &now
	}
	if current == nil || !current.Built.Equal(&built) {
		status.MatchTime = &now
	}
	status.SeverityCounts = vigilv1alpha1.SeverityCounts{}
	status.Vulnerabilities = nil
	for _, f := range result.Findings {
		status.SeverityCounts.Add(f.Severity)
		if len(status.Vulnerabilities) < vigilv1alpha1.MaxImageScanVulnerabilities {
			fixedIn := ""
			if len(f.FixedIn) > 0 {
				fixedIn = f.FixedIn[0]
			}
			status.Vulnerabilities = append(status.Vulnerabilities, vigilv1alpha1.ImageVulnerability{
				ID: vigilv1alpha1.Truncate(f.ID, 128), Severity: f.Severity, Package: vigilv1alpha1.Truncate(f.Package.Name, 256),
				Installed: vigilv1alpha1.Truncate(f.Package.Version, 128), FixedIn: vigilv1alpha1.Truncate(fixedIn, 128),
			})
		}
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: vigilv1alpha1.ConditionScanned, Status: metav1.ConditionTrue, Reason: ReasonMatched,
		Message:            fmt.Sprintf("%d vulnerabilities in %d packages", len(result.Findings), result.Packages),
		ObservedGeneration: scan.Generation,
	})
	if err := r.writeStatus(ctx, scan, status); err != nil {
		return ctrl.Result{}, err
	}
	if scan.Status.Phase != vigilv1alpha1.ImageScanScanned {
		r.Events.Eventf(scan, nil, corev1.EventTypeNormal, ReasonMatched, "Match", "%d vulnerabilities in %d packages", len(result.Findings), result.Packages)
	}
	reference := ""
	if len(scan.Spec.References) > 0 {
		reference = scan.Spec.References[0].Image
	}
	r.Changed(r.Findings.SetImage(digest, reference, result.Findings))
	log.FromContext(ctx).V(1).Info("Matched image", "imageScan", klog.KObj(scan), "vulnerabilities", len(result.Findings))
	return ctrl.Result{}, nil
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

// credentials gathers the pull credentials of a reference's namespace: the workload's own pull
// secrets and its service account's. Secrets are read one at a time and only where Vigil's
// namespace setup allows it; a secret that cannot be read is skipped, and its content is never
// logged.
func (r *Reconciler) credentials(ctx context.Context, reference vigilv1alpha1.ImageReference) []sbom.Credential {
	if reference.Namespace == "" {
		return nil
	}
	logger := log.FromContext(ctx)
	names := append([]string(nil), reference.ImagePullSecrets...)
	if reference.ServiceAccountName != "" {
		account := &corev1.ServiceAccount{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: reference.Namespace, Name: reference.ServiceAccountName}, account)
		if err == nil {
			for _, secret := range account.ImagePullSecrets {
				names = append(names, secret.Name)
			}
		} else if !apierrors.IsNotFound(err) {
			logger.V(1).Info("Cannot read the service account of an image reference", "namespace", reference.Namespace,
				"serviceAccount", reference.ServiceAccountName, "reason", apierrors.ReasonForError(err))
		}
	}
	var credentials []sbom.Credential
	for _, name := range names {
		secret := &corev1.Secret{}
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: reference.Namespace, Name: name}, secret); err != nil {
			logger.V(1).Info("Cannot read a pull secret", "secret", klog.KRef(reference.Namespace, name), "reason", apierrors.ReasonForError(err))
			continue
		}
		found, err := sbom.CredentialsFromSecret(secret)
		if err != nil {
			logger.Info("Ignoring a pull secret", "secret", klog.KRef(reference.Namespace, name), "error", err.Error())
			continue
		}
		credentials = append(credentials, found...)
	}
	return credentials
}

func (r *Reconciler) backoff(attempts int32) time.Duration {
	wait := r.RetryBackoff
	for i := int32(1); i < attempts && wait < r.MaxRetryBackoff; i++ {
		wait *= 2
	}
	return min(wait, r.MaxRetryBackoff)
}

// retryWait is how long a failed ImageScan still waits before its next attempt.
func (r *Reconciler) retryWait(scan *vigilv1alpha1.ImageScan) time.Duration {
	if scan.Status.LastAttemptTime == nil || scan.Status.Attempts == 0 {
		return 0
	}
	return time.Until(scan.Status.LastAttemptTime.Add(r.backoff(scan.Status.Attempts)))
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

// failureReason names why a registry operation failed.
func failureReason(err error, otherwise string) string {
	message := err.Error()
	var tooLarge *sbom.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		return ReasonTooLarge
	case errors.Is(err, sbom.ErrUnauthorized):
		return ReasonAuthenticationFailed
	case strings.Contains(message, "MANIFEST_UNKNOWN") || strings.Contains(message, "NAME_UNKNOWN") || strings.Contains(message, "status code 404"):
		return ReasonImageNotFound
	case strings.Contains(message, "connection refused") || strings.Contains(message, "no such host") ||
		strings.Contains(message, "deadline exceeded") || strings.Contains(message, "i/o timeout"):
		return ReasonRegistryUnreachable
	}
	return otherwise
}

// oneLine folds a message into one line of at most n bytes.
func oneLine(message string, n int) string {
	message = strings.Join(strings.Fields(message), " ")
	if len(message) > n {
		message = message[:n]
	}
	return message
}
