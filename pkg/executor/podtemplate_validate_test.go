package executor

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestValidatingAPodTemplate(t *testing.T) {
	configMap := corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "ca"}}}
	secret := corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "ca"}}
	both := corev1.VolumeSource{ConfigMap: configMap.ConfigMap, Secret: secret.Secret}
	tests := []struct {
		name     string
		template PodTemplate
		wantErrs []string
	}{
		{name: "configMap and secret volumes, mounted", template: PodTemplate{
			Volumes:      []corev1.Volume{{Name: "a", VolumeSource: configMap}, {Name: "b", VolumeSource: secret}},
			VolumeMounts: []corev1.VolumeMount{{Name: "a", MountPath: "/a"}, {Name: "b", MountPath: "/b"}},
			Env: []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://proxy:3128"},
				{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
				{Name: "FROM_MAP", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{Key: "k"}}},
				{Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "k"}}}},
		}},
		{name: "a volume of both kinds", template: PodTemplate{Volumes: []corev1.Volume{{Name: "a", VolumeSource: both}}},
			wantErrs: []string{`volume "a": give either configMap or secret`}},
		{name: "a mount without a path", template: PodTemplate{
			Volumes: []corev1.Volume{{Name: "a", VolumeSource: secret}}, VolumeMounts: []corev1.VolumeMount{{Name: "a"}},
		}, wantErrs: []string{`volume mount "a": no mountPath`}},
		{name: "a variable without a name", template: PodTemplate{Env: []corev1.EnvVar{{Value: "x"}}},
			wantErrs: []string{`environment variable "": not allowed`}},
		{name: "a variable from the container's resources", template: PodTemplate{Env: []corev1.EnvVar{{Name: "LIMIT",
			ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory"}}}}},
			wantErrs: []string{`environment variable "LIMIT": valueFrom may only name`}},
		{name: "every mistake is named", template: PodTemplate{
			Volumes:      []corev1.Volume{{Name: "tmp", VolumeSource: secret}, {Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
			VolumeMounts: []corev1.VolumeMount{{Name: "none", MountPath: "/x"}},
			Env:          []corev1.EnvVar{{Name: "TMPDIR", Value: "/"}},
		}, wantErrs: []string{`volume "tmp"`, `volume "host"`, `volume mount "none"`, `environment variable "TMPDIR"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.template.Validate()
			if len(tc.wantErrs) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted the template, want %q", tc.wantErrs)
			}
			for _, want := range tc.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate = %v, want it to say %q", err, want)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tc.wantErrs) {
				t.Errorf("Validate named %d problems, want %d: %v", got, len(tc.wantErrs), err)
			}
		})
	}
}
