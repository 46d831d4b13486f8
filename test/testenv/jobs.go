package testenv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// JobRunner does for scan Jobs what the Job controller and a kubelet would: for each new Job of a
// namespace, once it is not suspended, it creates the Job's pod, mounts its volumes as local
// files (a projected service-account token bound to the pod, the Secrets), and runs the
// container's command as a local process with the binary that stands for the container image.
type JobRunner struct {
	Env       *Environment
	Namespace string
	// Binary stands for the container's command: a Job whose command is not /NAME, NAME being
	// Binary's file name, fails as it would in the image. It runs with the container's arguments.
	Binary string
	// Secrets are extra secret contents by name, for volumes whose Secret the test does not create.
	Secrets map[string]map[string][]byte
	// Rewrite maps strings of the container's arguments, for example the report URL's host.
	Rewrite map[string]string

	mu   sync.Mutex
	ran  map[string]bool
	Logs map[string]string
}

// Run runs the Jobs that appear until ctx ends.
func (r *JobRunner) Run(ctx context.Context) {
	r.ran, r.Logs = map[string]bool{}, map[string]string{}
	for {
		jobs := &batchv1.JobList{}
		if err := r.Env.Client.List(ctx, jobs, client.InNamespace(r.Namespace)); err == nil {
			for i := range jobs.Items {
				job := &jobs.Items[i]
				if ptr.Deref(job.Spec.Suspend, false) {
					continue // as the Job controller: no pod until the Job is released
				}
				r.mu.Lock()
				started := r.ran[job.Name]
				r.ran[job.Name] = true
				r.mu.Unlock()
				if !started {
					go r.runJob(ctx, job)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Output is the output of each Job that ended, by name.
func (r *JobRunner) Output() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.Logs)
}

// Ran tells the Jobs run so far.
func (r *JobRunner) Ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for name := range r.ran {
		names = append(names, name)
	}
	return names
}

func (r *JobRunner) runJob(ctx context.Context, job *batchv1.Job) {
	output, err := r.run(ctx, job)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		output += "\nerror: " + err.Error()
	}
	r.Logs[job.Name] = output
}

func (r *JobRunner) run(ctx context.Context, job *batchv1.Job) (string, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: job.Namespace, Name: job.Name + "-x7k2p", Labels: job.Spec.Template.Labels},
		Spec:       job.Spec.Template.Spec,
	}
	if err := controllerutil.SetControllerReference(job, pod, r.Env.Client.Scheme()); err != nil {
		return "", err
	}
	if err := r.Env.Client.Create(ctx, pod); err != nil {
		return "", fmt.Errorf("creating the pod of Job %s: %w", job.Name, err)
	}
	if err := r.updateJobStatus(ctx, job, func(status *batchv1.JobStatus) {
		started := metav1.Now()
		status.StartTime, status.Active = &started, 1
	}); err != nil {
		return "", fmt.Errorf("starting Job %s: %w", job.Name, err)
	}
	pod.Status.Phase = corev1.PodRunning
	if err := r.Env.Client.Status().Update(ctx, pod); err != nil {
		return "", fmt.Errorf("starting the pod of Job %s: %w", job.Name, err)
	}
	dir, err := os.MkdirTemp("", "vigil-job-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	container := pod.Spec.Containers[0]
	if want := "/" + filepath.Base(r.Binary); len(container.Command) != 1 || container.Command[0] != want {
		return "", errors.Join(fmt.Errorf("the Job's command is %q; this runner runs %s", container.Command, want), r.end(ctx, job, pod, false))
	}
	mounts := map[string]string{}
	for _, volume := range pod.Spec.Volumes {
		local := filepath.Join(dir, volume.Name)
		if err := os.MkdirAll(local, 0o700); err != nil {
			return "", err
		}
		if err := r.materialize(ctx, pod, volume, local); err != nil {
			return "", fmt.Errorf("mounting volume %s: %w", volume.Name, err)
		}
		for _, mount := range container.VolumeMounts {
			if mount.Name == volume.Name {
				mounts[mount.MountPath] = local
			}
		}
	}
	var args []string
	for _, arg := range container.Args {
		for mountPath, local := range mounts {
			if arg == mountPath {
				arg = local
				break
			}
			if rest, ok := strings.CutPrefix(arg, mountPath+"/"); ok {
				arg = filepath.Join(local, rest)
				break
			}
		}
		for from, to := range r.Rewrite {
			arg = strings.ReplaceAll(arg, from, to)
		}
		args = append(args, arg)
	}
	cmd := exec.CommandContext(ctx, r.Binary, args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+mounts["/tmp"])
	output, err := cmd.CombinedOutput()
	return string(output), errors.Join(err, r.end(ctx, job, pod, err == nil))
}

// end records the end of a Job's only pod as a kubelet and the Job controller would: the pod's
// phase, then the Job's count and its terminal conditions (a failed pod fails the Job: scan Jobs
// are not retried).
func (r *JobRunner) end(ctx context.Context, job *batchv1.Job, pod *corev1.Pod, succeeded bool) error {
	pod.Status.Phase = corev1.PodFailed
	if succeeded {
		pod.Status.Phase = corev1.PodSucceeded
	}
	if err := r.Env.Client.Status().Update(ctx, pod); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("ending the pod of Job %s: %w", job.Name, err)
	}
	// A Job deleted meanwhile (its scan reported, or abandoned) has nothing left to record.
	err := r.updateJobStatus(ctx, job, func(status *batchv1.JobStatus) {
		now := metav1.Now()
		condition := func(kind batchv1.JobConditionType, reason string) batchv1.JobCondition {
			return batchv1.JobCondition{Type: kind, Status: corev1.ConditionTrue, Reason: reason, LastProbeTime: now, LastTransitionTime: now}
		}
		status.Active = 0
		if succeeded {
			status.Succeeded, status.CompletionTime = 1, &now
			status.Conditions = append(status.Conditions,
				condition(batchv1.JobSuccessCriteriaMet, batchv1.JobReasonCompletionsReached), condition(batchv1.JobComplete, batchv1.JobReasonCompletionsReached))
			return
		}
		status.Failed = 1
		status.Conditions = append(status.Conditions,
			condition(batchv1.JobFailureTarget, batchv1.JobReasonBackoffLimitExceeded), condition(batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded))
	})
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("ending Job %s: %w", job.Name, err)
	}
	return nil
}

// updateJobStatus changes the status of the newest Job of job's name with change, and writes it.
func (r *JobRunner) updateJobStatus(ctx context.Context, job *batchv1.Job, change func(*batchv1.JobStatus)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current := &batchv1.Job{}
		if err := r.Env.Client.Get(ctx, client.ObjectKeyFromObject(job), current); err != nil {
			return err
		}
		change(&current.Status)
		return r.Env.Client.Status().Update(ctx, current)
	})
}

// materialize writes a volume's content into local, as a kubelet mounts it.
func (r *JobRunner) materialize(ctx context.Context, pod *corev1.Pod, volume corev1.Volume, local string) error {
	switch {
	case volume.EmptyDir != nil:
		return nil
	case volume.Secret != nil:
		data := r.Secrets[volume.Secret.SecretName]
		if data == nil {
			// A kubelet waits for a Secret created after the pod.
			secret := &corev1.Secret{}
			key := client.ObjectKey{Namespace: pod.Namespace, Name: volume.Secret.SecretName}
			var err error
			for range 50 {
				if err = r.Env.Client.Get(ctx, key, secret); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				return err
			}
			data = secret.Data
		}
		items := volume.Secret.Items
		if len(items) == 0 {
			for key := range data {
				items = append(items, corev1.KeyToPath{Key: key, Path: key})
			}
		}
		for _, item := range items {
			if err := os.WriteFile(filepath.Join(local, item.Path), data[item.Key], 0o600); err != nil {
				return err
			}
		}
		return nil
	case volume.Projected != nil:
		clientset, err := kubernetes.NewForConfig(r.Env.Config)
		if err != nil {
			return err
		}
		for _, source := range volume.Projected.Sources {
			projection := source.ServiceAccountToken
			if projection == nil {
				continue
			}
			token, err := clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{
					Audiences:         []string{projection.Audience},
					ExpirationSeconds: projection.ExpirationSeconds,
					BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("requesting the pod's token: %w", err)
			}
			if err := os.WriteFile(filepath.Join(local, projection.Path), []byte(token.Status.Token), 0o600); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("volume %s: unsupported source", volume.Name)
}
