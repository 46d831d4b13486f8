package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// ComponentLabel marks scan Jobs.
	ComponentLabel = "app.kubernetes.io/component"
	// ComponentValue is ComponentLabel's value on scan Jobs.
	ComponentValue = "scan-job"
	// ReportAudience is the audience of the service-account token a scan Job reports with.
	ReportAudience = "vigil.dev/scan-report"

	tokenPath       = "/var/run/secrets/vigil/token/token"
	credentialsPath = "/var/run/secrets/vigil/credentials/config.json"
	caPath          = "/var/run/secrets/vigil/ca/ca.crt"
)

// JobOptions configure the scan Jobs.
type JobOptions struct {
	// Namespace is Vigil's namespace, where the Jobs run.
	Namespace string
	// Image is the scanner image; its entrypoint is the vigil command.
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
	// PodTemplate is the administrator's shaping of the Jobs' pods.
	PodTemplate PodTemplate
}

// Jobs runs each scan as a Kubernetes Job in Vigil's namespace. The pull credentials of a scan
// travel in a Secret that the Job owns (deleted with it); the Job reports its SBOM or its
// failure to the manager's ReportHandler, authenticated by its projected service-account token.
type Jobs struct {
	client  client.Client
	reader  client.Reader
	options JobOptions

	mu       sync.Mutex
	outcomes map[string]Outcome
}

// NewJobs returns the Job executor.
func NewJobs(c client.Client, reader client.Reader, options JobOptions) *Jobs {
	return &Jobs{client: c, reader: reader, options: options, outcomes: map[string]Outcome{}}
}

// JobName is the name of the scan Job of digest.
func JobName(digest string) string {
	return "vigil-scan-" + strings.TrimPrefix(digest, "sha256:")[:40]
}

// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;delete,namespace=vigil-system
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// Submit creates the scan Job of req.Digest and its credentials Secret, unless the Job exists.
func (j *Jobs) Submit(ctx context.Context, req Request) error {
	name := JobName(req.Digest)
	existing := &batchv1.Job{}
	err := j.reader.Get(ctx, client.ObjectKey{Namespace: j.options.Namespace, Name: name}, existing)
	if err == nil {
		if finished(existing) {
			// A Job of an earlier attempt: remove it, and its Secret with it, and start afresh.
			if err := j.client.Delete(ctx, existing, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("removing the previous scan Job %s: %w", name, err)
			}
			return fmt.Errorf("the previous scan Job %s is being removed; retrying", name)
		}
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading scan Job %s: %w", name, err)
	}
	j.mu.Lock()
	delete(j.outcomes, req.Digest)
	j.mu.Unlock()

	config := dockerConfig{Auths: map[string]dockerAuth{}}
	var images []string
	for _, image := range req.Images {
		images = append(images, image.Reference)
		for _, credential := range image.Credentials {
			config.Auths[credential.Registry] = dockerAuth{Username: credential.Username, Password: credential.Password, IdentityToken: credential.Token}
		}
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return err
	}

	job := j.job(name, req.Digest, images)
	if err := j.client.Create(ctx, job); err != nil {
		return fmt.Errorf("creating scan Job %s: %w", name, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: j.options.Namespace, Name: name, Labels: job.Labels},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: configJSON},
	}
	if err := controllerutil.SetControllerReference(job, secret, j.client.Scheme()); err != nil {
		return err
	}
	if err := j.client.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the credentials of scan Job %s: %w", name, err)
	}
	return nil
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
func (j *Jobs) job(name, digest string, images []string) *batchv1.Job {
	labels := map[string]string{
		DigestLabel: strings.TrimPrefix(digest, "sha256:")[:63], ComponentLabel: ComponentValue,
		"app.kubernetes.io/name": "vigil",
	}
	args := []string{"scan-job", "--digest", digest, "--report-url", j.options.ReportURL, "--token-file", tokenPath,
		"--registry-config", credentialsPath, "--ca-file", caPath}
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
			Annotations: map[string]string{DigestAnnotation: digest},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To[int32](0),
			ActiveDeadlineSeconds:   ptr.To(int64(j.options.Timeout.Seconds())),
			TTLSecondsAfterFinished: ptr.To[int32](600),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy:                corev1.RestartPolicyNever,
					ServiceAccountName:           j.options.ServiceAccountName,
					AutomountServiceAccountToken: ptr.To(false),
					NodeSelector:                 j.options.NodeSelector,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name: "scan", Image: j.options.Image, Args: args,
						Resources: j.options.Resources,
						Env:       []corev1.EnvVar{{Name: "TMPDIR", Value: "/tmp"}},
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
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
							Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
								Audience: ReportAudience, ExpirationSeconds: ptr.To[int64](3600), Path: "token",
							}}},
						}}},
						{Name: "credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
							SecretName: name, Items: []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}},
						}}},
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

func finished(job *batchv1.Job) bool {
	for _, condition := range job.Status.Conditions {
		if (condition.Type == batchv1.JobComplete || condition.Type == batchv1.JobFailed) && condition.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// Running tells whether the scan Job of digest exists, has not finished, and has not reported.
func (j *Jobs) Running(ctx context.Context, digest string) bool {
	j.mu.Lock()
	_, reported := j.outcomes[digest]
	j.mu.Unlock()
	if reported {
		return false
	}
	job := &batchv1.Job{}
	if err := j.reader.Get(ctx, client.ObjectKey{Namespace: j.options.Namespace, Name: JobName(digest)}, job); err != nil {
		return false
	}
	return !finished(job)
}

// TakeOutcome returns what the scan Job of digest reported, or why it failed without a report
// (killed for exceeding its memory limit, past its deadline).
func (j *Jobs) TakeOutcome(ctx context.Context, digest string) (Outcome, bool) {
	j.mu.Lock()
	outcome, ok := j.outcomes[digest]
	delete(j.outcomes, digest)
	j.mu.Unlock()
	if ok {
		return outcome, true
	}
	job := &batchv1.Job{}
	if err := j.reader.Get(ctx, client.ObjectKey{Namespace: j.options.Namespace, Name: JobName(digest)}, job); err != nil {
		return Outcome{}, false
	}
	for _, condition := range job.Status.Conditions {
		if condition.Type != batchv1.JobFailed || condition.Status != corev1.ConditionTrue {
			continue
		}
		pods := &corev1.PodList{}
		_ = j.reader.List(ctx, pods, client.InNamespace(j.options.Namespace), client.MatchingLabels{DigestLabel: job.Labels[DigestLabel]})
		for _, pod := range pods.Items {
			for _, status := range pod.Status.ContainerStatuses {
				if terminated := status.State.Terminated; terminated != nil && terminated.Reason == "OOMKilled" {
					return Outcome{Digest: digest, Err: &OOMKilledError{Limit: j.options.Resources.Limits.Memory().String()}}, true
				}
			}
		}
		return Outcome{Digest: digest, Err: fmt.Errorf("scan Job %s failed: %s: %s", job.Name, condition.Reason, condition.Message)}, true
	}
	return Outcome{}, false
}

// OOMKilledError says that a scan Job was killed for using more memory than its limit: the image
// is too large for the scanner's memory.
type OOMKilledError struct {
	Limit string
}

func (e *OOMKilledError) Error() string {
	return fmt.Sprintf("the scan Job was killed for using more than its memory limit of %s; raise resources.scanner.limits.memory", e.Limit)
}

// report records what a scan Job reported; the ReportHandler calls it.
func (j *Jobs) report(outcome Outcome) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.outcomes[outcome.Digest] = outcome
}
