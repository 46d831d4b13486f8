package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/vigil-dev/vigil/pkg/sbom"
)

// Labels and paths of scan Jobs.
const (
	// DigestLabel holds the hex part of the scanned digest on a scan Job and its pod.
	DigestLabel = "vigil.dev/scan-digest"
	// DigestAnnotation holds the whole scanned digest on a scan Job.
	DigestAnnotation = "vigil.dev/digest"
	// AttemptAnnotation holds the scan attempt a scan Job runs.
	AttemptAnnotation = "vigil.dev/attempt"
	// ComponentLabel marks scan Jobs.
	ComponentLabel = "app.kubernetes.io/component"
	// ComponentValue is ComponentLabel's value on scan Jobs.
	ComponentValue = "scan-job"
	// ScannerCommand is the scan Jobs' command in Vigil's image: vigil-scanner, which holds the
	// scan engine (the image's entrypoint, vigil, does not).
	ScannerCommand = "/vigil-scanner"
	// ReportAudience is the audience of the service-account token a scan Job reports with.
	ReportAudience = "vigil.dev/scan-report"

	tokenPath      = "/var/run/secrets/vigil/token/token"
	credentialsDir = "/var/run/secrets/vigil/credentials"
	caPath         = "/var/run/secrets/vigil/ca/ca.crt"
)

// JobOptions configure the scan Jobs.
type JobOptions struct {
	// Namespace is Vigil's namespace, where the Jobs run.
	Namespace string
	// Image is the scanner image; it holds the vigil-scanner command at ScannerCommand.
	Image string
	// ServiceAccountName is the scan Jobs' service account: it needs no permission at all; its
	// token only proves to the manager that a report comes from a scan Job.
	ServiceAccountName string
	// NodeSelector and Resources are set on the scan Jobs' pods.
	NodeSelector map[string]string
	Resources    corev1.ResourceRequirements
	// ReportURL is the manager's scan report endpoint, as the Jobs reach it.
	ReportURL string
	// CASecretName is a Secret in Namespace whose ca.crt the Jobs trust for ReportURL.
	CASecretName string
	// Scan are the scan settings passed to every Job (platform, bounds, registry access).
	Scan sbom.Options
	// Timeout bounds a Job (activeDeadlineSeconds).
	Timeout time.Duration
	// UserNamespace runs the scan pods in a user namespace of their own (hostUsers: false); the
	// cluster's nodes must support it.
	UserNamespace bool
	// PodTemplate is the administrator's shaping of the Jobs' pods.
	PodTemplate PodTemplate
}

// Jobs runs each scan attempt as a Kubernetes Job in Vigil's namespace, named by digest and
// attempt, so that a retry never meets the previous attempt's objects. The pull credentials of
// an attempt travel in a Secret that its Job owns (deleted with it), one registry configuration
// per reference; the Job reports its SBOM or its failure to the manager's ReportHandler,
// authenticated by its projected service-account token.
type Jobs struct {
	client   client.Client
	reader   client.Reader
	options  JobOptions
	outcomes OutcomeRecorder
}

// NewJobs returns the Job executor; reader should read from the API server, not a cache.
func NewJobs(c client.Client, reader client.Reader, options JobOptions, outcomes OutcomeRecorder) *Jobs {
	return &Jobs{client: c, reader: reader, options: options, outcomes: outcomes}
}

// JobName is the name of the scan Job of an attempt at digest by the ImageScan scanUID. The
// ImageScan's UID is in it because an ImageScan deleted and recorded again numbers its attempts
// from 1 again: its attempts must not find the Jobs of the one before (kept a while once
// finished), nor read their outcomes as theirs.
func JobName(digest string, scanUID types.UID, attempt int32) string {
	uid := strings.ReplaceAll(string(scanUID), "-", "")
	return fmt.Sprintf("vigil-scan-%s-%s-%d", strings.TrimPrefix(digest, "sha256:")[:32], uid[:min(len(uid), 8)], attempt)
}

// Jobs are read cluster-wide (workload resolution needs them) but created and deleted only in
// Vigil's namespace; the chart renders the namespaced rules into the release namespace.
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=create;delete;patch,namespace=vigil-system
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;delete,namespace=vigil-system
// The credentials Secret names its Job as owner with blockOwnerDeletion, which clusters that
// enforce owner-reference permissions (OpenShift) allow only with update on jobs/finalizers.
// +kubebuilder:rbac:groups=batch,resources=jobs/finalizers,verbs=update,namespace=vigil-system
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// Submit creates the scan Job of the attempt and its credentials Secret, unless the Job exists.
// The Job is created suspended and released once its Secret exists: a replica that dies between
// the two leaves a suspended Job, which Check finds lost, never a pod that waits for its Secret.
func (j *Jobs) Submit(ctx context.Context, req Request) error {
	name := JobName(req.Digest, req.ScanUID, req.Attempt)
	secretData := map[string][]byte{}
	var images []string
	for i, image := range req.Images {
		images = append(images, image.Reference)
		config := dockerConfig{Auths: map[string]dockerAuth{}}
		for _, credential := range image.Credentials {
			config.Auths[credential.Registry] = dockerAuth{Username: credential.Username, Password: credential.Password, IdentityToken: credential.Token}
		}
		configJSON, err := json.Marshal(config)
		if err != nil {
			return fmt.Errorf("encoding the credentials of %s: %w", image.Reference, err)
		}
		secretData[credentialsFile(i)] = configJSON
	}

	job := j.job(name, req, images)
	if err := j.client.Create(ctx, job); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil // submitted before: the Job and its Secret are the attempt's own
		}
		return fmt.Errorf("creating scan Job %s: %w", name, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: j.options.Namespace, Name: name, Labels: job.Labels},
		Type:       corev1.SecretTypeOpaque,
		Data:       secretData,
	}
	if err := controllerutil.SetControllerReference(job, secret, j.client.Scheme()); err != nil {
		return err
	}
	if err := j.client.Create(ctx, secret); err != nil {
		// Without its Secret the Job's pod cannot start: remove the Job, so that the attempt is
		// lost and the reconciler starts another.
		if deleteErr := j.delete(ctx, job); deleteErr != nil {
			return errors.Join(fmt.Errorf("creating the credentials of scan Job %s: %w", name, err), deleteErr)
		}
		return fmt.Errorf("creating the credentials of scan Job %s: %w", name, err)
	}
	// A Job left suspended by a failed release is found lost by Check.
	release := client.MergeFrom(job.DeepCopy())
	job.Spec.Suspend = ptr.To(false)
	if err := j.client.Patch(ctx, job, release); err != nil {
		return fmt.Errorf("releasing scan Job %s: %w", name, err)
	}
	return nil
}

// delete removes a scan Job and, through the garbage collector, its credentials Secret and pod.
func (j *Jobs) delete(ctx context.Context, job *batchv1.Job) error {
	return client.IgnoreNotFound(j.client.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground)))
}

// credentialsFile is the file, in the credentials Secret and folder, of the i-th reference's
// registry configuration.
func credentialsFile(i int) string {
	return strconv.Itoa(i) + ".json"
}

type dockerConfig struct {
	Auths map[string]dockerAuth `json:"auths"`
}

type dockerAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
}

// job is the scan Job: the restricted Pod Security Standard (non-root, read-only root file
// system, no privilege escalation, no capabilities, seccomp RuntimeDefault), no API access, a
// projected token for reporting only, and no retries of its own: the manager retries.
func (j *Jobs) job(name string, req Request, images []string) *batchv1.Job {
	labels := map[string]string{
		DigestLabel: strings.TrimPrefix(req.Digest, "sha256:")[:63], ComponentLabel: ComponentValue,
		"app.kubernetes.io/name": "vigil",
	}
	args := []string{"scan-job", "--digest", req.Digest, "--report-url", j.options.ReportURL, "--token-file", tokenPath,
		"--registry-config-dir", credentialsDir, "--ca-file", caPath}
	for _, image := range images {
		args = append(args, "--image", image)
	}
	scan := j.options.Scan
	if scan.Platform != "" {
		args = append(args, "--platform", scan.Platform)
	}
	if scan.MaxImageSize > 0 {
		args = append(args, "--max-image-size", strconv.FormatInt(scan.MaxImageSize, 10))
	}
	if scan.MaxSBOMSize > 0 {
		args = append(args, "--max-sbom-size", strconv.FormatInt(scan.MaxSBOMSize, 10))
	}
	if scan.Timeout > 0 {
		args = append(args, "--timeout", scan.Timeout.String())
	}
	args = append(args, scan.JobArgs()...)
	for host, access := range scan.Registries {
		if access.PlainHTTP {
			args = append(args, "--plain-http", host)
		}
		if access.SkipTLSVerify {
			args = append(args, "--insecure-skip-tls-verify", host)
		}
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: j.options.Namespace, Name: name, Labels: labels,
			Annotations: map[string]string{DigestAnnotation: req.Digest, AttemptAnnotation: strconv.Itoa(int(req.Attempt))},
		},
		Spec: batchv1.JobSpec{
			Suspend:                 ptr.To(true), // released by Submit once its Secret exists
			BackoffLimit:            ptr.To[int32](0),
			ActiveDeadlineSeconds:   ptr.To(int64(j.options.Timeout.Seconds())),
			TTLSecondsAfterFinished: ptr.To[int32](600),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					EnableServiceLinks:           ptr.To(false),
					HostUsers:                    hostUsers(j.options.UserNamespace),
					ServiceAccountName:           j.options.ServiceAccountName,
					AutomountServiceAccountToken: ptr.To(false),
					NodeSelector:                 j.options.NodeSelector,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name: "scan", Image: j.options.Image, Command: []string{ScannerCommand}, Args: args,
						Resources: j.options.Resources,
						Env:       scannerEnv(j.options.Resources),
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							RunAsNonRoot:             ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "tmp", MountPath: "/tmp"},
							{Name: "token", MountPath: "/var/run/secrets/vigil/token", ReadOnly: true},
							{Name: "credentials", MountPath: "/var/run/secrets/vigil/credentials", ReadOnly: true},
							{Name: "ca", MountPath: "/var/run/secrets/vigil/ca", ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{
						// the scratch volume is bounded by the Job's ephemeral storage limit, if any
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
							SizeLimit: scratchSizeLimit(j.options.Resources),
						}}},
						{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
							Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
								Audience: ReportAudience, ExpirationSeconds: ptr.To[int64](3600), Path: "token",
							}}},
						}}},
						{Name: "credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name}}},
						{Name: "ca", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
							SecretName: j.options.CASecretName, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
						}}},
					},
				},
			},
		},
	}
	applyPodTemplate(job, j.options.PodTemplate)
	return job
}

// scratchSizeLimit is the ephemeral storage limit of resources, or nil when it has none.
func scratchSizeLimit(resources corev1.ResourceRequirements) *resource.Quantity {
	if limit, ok := resources.Limits[corev1.ResourceEphemeralStorage]; ok {
		return &limit
	}
	return nil
}

// Check tells the state of an attempt from its Job. A Job that failed without a report (killed
// for its memory, past its deadline, its pod lost) has its failure recorded here; a Job never
// released (see Submit) is removed and its attempt lost.
func (j *Jobs) Check(ctx context.Context, digest string, scanUID types.UID, attempt int32) (State, error) {
	job := &batchv1.Job{}
	err := j.reader.Get(ctx, client.ObjectKey{Namespace: j.options.Namespace, Name: JobName(digest, scanUID, attempt)}, job)
	if apierrors.IsNotFound(err) {
		return Lost, nil
	}
	if err != nil {
		return Lost, fmt.Errorf("reading scan Job %s: %w", JobName(digest, scanUID, attempt), err)
	}
	for _, condition := range job.Status.Conditions {
		if condition.Status != corev1.ConditionTrue {
			continue
		}
		switch condition.Type {
		case batchv1.JobComplete:
			return Ended, nil
		case batchv1.JobFailed:
			failure, err := j.failureOf(ctx, job, condition)
			if err != nil {
				return Running, err
			}
			err = j.outcomes.RecordOutcome(ctx, Outcome{Digest: digest, Attempt: attempt, Err: failure})
			if err != nil && !errors.Is(err, ErrStaleAttempt) {
				return Ended, fmt.Errorf("recording the failure of scan Job %s: %w", job.Name, err)
			}
			return Ended, nil
		}
	}
	if ptr.Deref(job.Spec.Suspend, false) {
		// Its submitter died or failed before its Secret was written or it was released.
		if err := j.delete(ctx, job); err != nil {
			return Lost, fmt.Errorf("removing scan Job %s, never released: %w", job.Name, err)
		}
		return Lost, nil
	}
	return Running, nil
}

// failureOf says why a Job failed: its container was killed for its memory, or the Job's own
// condition.
func (j *Jobs) failureOf(ctx context.Context, job *batchv1.Job, failed batchv1.JobCondition) (error, error) {
	pods := &corev1.PodList{}
	if err := j.reader.List(ctx, pods, client.InNamespace(j.options.Namespace), client.MatchingLabels{"batch.kubernetes.io/job-name": job.Name}); err != nil {
		return nil, fmt.Errorf("listing the pods of scan Job %s: %w", job.Name, err)
	}
	for _, pod := range pods.Items {
		for _, status := range pod.Status.ContainerStatuses {
			if terminated := status.State.Terminated; terminated != nil && terminated.Reason == "OOMKilled" {
				return &OOMKilledError{Limit: j.options.Resources.Limits.Memory().String()}, nil
			}
		}
	}
	return fmt.Errorf("scan Job %s failed: %s: %s", job.Name, failed.Reason, failed.Message), nil
}

// hostUsers is the pod's hostUsers field: false for a user namespace of its own, else unset.
func hostUsers(userNamespace bool) *bool {
	if userNamespace {
		return ptr.To(false)
	}
	return nil
}

// scannerEnv is the scan container's environment: its scratch folder, and, under a memory limit,
// GOMEMLIMIT at that limit, so that the Go runtime collects harder as a scan nears the limit
// instead of being OOMKilled at it with garbage still held.
func scannerEnv(resources corev1.ResourceRequirements) []corev1.EnvVar {
	env := []corev1.EnvVar{{Name: "TMPDIR", Value: "/tmp"}}
	if _, limited := resources.Limits[corev1.ResourceMemory]; limited {
		env = append(env, corev1.EnvVar{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{
			ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "scan", Resource: "limits.memory"},
		}})
	}
	return env
}
