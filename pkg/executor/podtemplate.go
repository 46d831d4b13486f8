package executor

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// PodTemplate is what an administrator shapes of the scan Jobs' pods, beyond their resources and
// node selector: metadata for meshes and policies, scheduling, pull secrets of the scanner image,
// and the environment and read-only volumes of proxies and certificate authorities. The chart
// renders it from its values into a file that the manager reads with LoadPodTemplate. Nothing in
// it can loosen the Jobs' security context.
type PodTemplate struct {
	// Labels and Annotations are added to the Job and its pod; Vigil's own labels win.
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// ImagePullSecrets pull the scanner image.
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	// Tolerations, Affinity and PriorityClassName place the pod.
	Tolerations       []corev1.Toleration `json:"tolerations,omitempty"`
	Affinity          *corev1.Affinity    `json:"affinity,omitempty"`
	PriorityClassName string              `json:"priorityClassName,omitempty"`
	// Resources of the scan container, when set, replace JobOptions.Resources (give both the same
	// value: the OOMKilled reason names JobOptions' memory limit).
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// Env is added to the scan container's environment: HTTPS_PROXY, NO_PROXY, SSL_CERT_DIR.
	Env []corev1.EnvVar `json:"env,omitempty"`
	// Volumes are ConfigMaps or Secrets (certificate bundles), mounted read-only by VolumeMounts.
	Volumes      []corev1.Volume      `json:"volumes,omitempty"`
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`
}

// reservedVolumes are the scan container's own volumes.
var reservedVolumes = []string{"tmp", "token", "credentials", "ca"}

// LoadPodTemplate reads and checks the PodTemplate of the YAML or JSON file at path. Unknown
// fields are errors, so that a misspelt value fails at start instead of being ignored.
func LoadPodTemplate(path string) (PodTemplate, error) {
	var template PodTemplate
	content, err := os.ReadFile(path)
	if err != nil {
		return template, fmt.Errorf("reading the scan Job pod template: %w", err)
	}
	if err := yaml.UnmarshalStrict(content, &template); err != nil {
		return template, fmt.Errorf("reading the scan Job pod template %s: %w", path, err)
	}
	if err := template.Validate(); err != nil {
		return template, fmt.Errorf("the scan Job pod template %s: %w", path, err)
	}
	return template, nil
}

// Validate checks that the template keeps the scan Jobs restricted: only ConfigMap and Secret
// volumes, mounted read-only, under names that are not the scan container's own, and no
// environment variable that Vigil sets.
func (t PodTemplate) Validate() error {
	var errs []error
	volumes := map[string]bool{}
	for _, volume := range t.Volumes {
		switch {
		case slices.Contains(reservedVolumes, volume.Name):
			errs = append(errs, fmt.Errorf("volume %q: the name is the scan container's own", volume.Name))
		case volume.ConfigMap == nil && volume.Secret == nil:
			errs = append(errs, fmt.Errorf("volume %q: only configMap and secret volumes are allowed", volume.Name))
		case volume.ConfigMap != nil && volume.Secret != nil:
			errs = append(errs, fmt.Errorf("volume %q: give either configMap or secret", volume.Name))
		}
		volumes[volume.Name] = true
	}
	for _, mount := range t.VolumeMounts {
		if !volumes[mount.Name] {
			errs = append(errs, fmt.Errorf("volume mount %q: no such volume in the template", mount.Name))
		}
		if mount.MountPath == "" {
			errs = append(errs, fmt.Errorf("volume mount %q: no mountPath", mount.Name))
		}
	}
	for _, env := range t.Env {
		if env.Name == "" || env.Name == "TMPDIR" {
			errs = append(errs, fmt.Errorf("environment variable %q: not allowed", env.Name))
		}
		if env.ValueFrom != nil && env.ValueFrom.FieldRef == nil && env.ValueFrom.ConfigMapKeyRef == nil && env.ValueFrom.SecretKeyRef == nil {
			errs = append(errs, fmt.Errorf("environment variable %q: valueFrom may only name a field, a ConfigMap key or a Secret key", env.Name))
		}
	}
	return errors.Join(errs...)
}

// applyPodTemplate shapes the scan Job with the administrator's template; Vigil's own labels,
// annotations, environment and volumes stay as they are.
func applyPodTemplate(job *batchv1.Job, t PodTemplate) {
	job.Labels = withDefaults(job.Labels, t.Labels)
	job.Annotations = withDefaults(job.Annotations, t.Annotations)
	pod := &job.Spec.Template
	pod.Labels = withDefaults(pod.Labels, t.Labels)
	pod.Annotations = withDefaults(pod.Annotations, t.Annotations)
	spec := &pod.Spec
	spec.ImagePullSecrets = append(spec.ImagePullSecrets, t.ImagePullSecrets...)
	spec.Tolerations = append(spec.Tolerations, t.Tolerations...)
	if t.Affinity != nil {
		spec.Affinity = t.Affinity.DeepCopy()
	}
	if t.PriorityClassName != "" {
		spec.PriorityClassName = t.PriorityClassName
	}
	for _, volume := range t.Volumes {
		spec.Volumes = append(spec.Volumes, *volume.DeepCopy())
	}
	container := &spec.Containers[0]
	if t.Resources != nil {
		container.Resources = *t.Resources.DeepCopy()
	}
	for _, env := range t.Env {
		container.Env = append(container.Env, *env.DeepCopy())
	}
	for _, mount := range t.VolumeMounts {
		mount.ReadOnly = true
		container.VolumeMounts = append(container.VolumeMounts, mount)
	}
}

// withDefaults is own with extra's entries that own lacks; own's entries win.
func withDefaults(own, extra map[string]string) map[string]string {
	if len(extra) == 0 {
		return own
	}
	merged := maps.Clone(extra)
	maps.Copy(merged, own)
	return merged
}
