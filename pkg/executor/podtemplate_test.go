package executor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestLoadPodTemplate(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		wantErr string
	}{
		{name: "empty", file: ""},
		{name: "every field", file: `
labels: {team: security}
annotations: {sidecar.istio.io/inject: "false"}
imagePullSecrets: [{name: mirror}]
tolerations: [{key: dedicated, operator: Equal, value: scans, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [scans]}]}]}}}
priorityClassName: low
resources: {limits: {memory: 2Gi, ephemeral-storage: 8Gi}}
env: [{name: HTTPS_PROXY, value: "http://proxy:3128"}]
volumes: [{name: ca-bundle, configMap: {name: company-ca}}]
volumeMounts: [{name: ca-bundle, mountPath: /etc/vigil/ca-bundle}]
`},
		{name: "a misspelt field", file: "toleration: []", wantErr: `unknown field "toleration"`},
		{name: "a hostPath volume", file: "volumes: [{name: host, hostPath: {path: /}}]", wantErr: `volume "host": only configMap and secret volumes are allowed`},
		{name: "a volume named like the scanner's own", file: "volumes: [{name: credentials, secret: {secretName: x}}]", wantErr: `volume "credentials": the name is the scan container's own`},
		{name: "a mount of no volume", file: "volumeMounts: [{name: nothing, mountPath: /x}]", wantErr: `volume mount "nothing": no such volume`},
		{name: "TMPDIR", file: "env: [{name: TMPDIR, value: /}]", wantErr: `environment variable "TMPDIR": not allowed`},
		{name: "a bad quantity", file: "resources: {limits: {memory: lots}}", wantErr: "quantities must match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pod-template.yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPodTemplate(path)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("LoadPodTemplate: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("LoadPodTemplate: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestThePodTemplateShapesTheScanJob(t *testing.T) {
	memory := resource.MustParse("2Gi")
	template := PodTemplate{
		Labels:            map[string]string{"team": "security", ComponentLabel: "hijacked"},
		Annotations:       map[string]string{"sidecar.istio.io/inject": "false"},
		ImagePullSecrets:  []corev1.LocalObjectReference{{Name: "mirror"}},
		Tolerations:       []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "scans"}},
		PriorityClassName: "low",
		Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "pool", Operator: corev1.NodeSelectorOpIn, Values: []string{"scans"}}}}},
		}}},
		Resources:    &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: memory}},
		Env:          []corev1.EnvVar{{Name: "HTTPS_PROXY", Value: "http://proxy:3128"}},
		Volumes:      []corev1.Volume{{Name: "ca-bundle", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "company-ca"}}}}},
		VolumeMounts: []corev1.VolumeMount{{Name: "ca-bundle", MountPath: "/etc/vigil/ca-bundle"}},
	}
	jobs := NewJobs(nil, nil, JobOptions{Namespace: "vigil-system", Image: "vigil:1", Timeout: time.Minute, PodTemplate: template}, nil)
	job := jobs.job("vigil-scan-x", Request{Digest: "sha256:" + strings.Repeat("ab", 32), Attempt: 1}, []string{"registry.example/app:1"})
	pod := job.Spec.Template
	container := pod.Spec.Containers[0]
	for _, check := range []struct {
		what string
		ok   bool
	}{
		{"the user's label on the Job and the pod", job.Labels["team"] == "security" && pod.Labels["team"] == "security"},
		{"Vigil's own label kept", job.Labels[ComponentLabel] == ComponentValue && pod.Labels[ComponentLabel] == ComponentValue},
		{"Vigil's digest annotation kept", job.Annotations[DigestAnnotation] != ""},
		{"the annotation on the pod", pod.Annotations["sidecar.istio.io/inject"] == "false"},
		{"the pull secret", len(pod.Spec.ImagePullSecrets) == 1 && pod.Spec.ImagePullSecrets[0].Name == "mirror"},
		{"the toleration", len(pod.Spec.Tolerations) == 1},
		{"the priority class", pod.Spec.PriorityClassName == "low"},
		{"the affinity, a copy", pod.Spec.Affinity != nil && pod.Spec.Affinity.NodeAffinity != nil && pod.Spec.Affinity != template.Affinity},
		{"the resources", container.Resources.Limits.Memory().Equal(memory)},
		{"TMPDIR kept and the proxy added", len(container.Env) == 2 && container.Env[0].Name == "TMPDIR" && container.Env[1].Name == "HTTPS_PROXY"},
		{"the CA bundle mounted read-only", container.VolumeMounts[len(container.VolumeMounts)-1].ReadOnly},
		{"the security context unchanged", !*container.SecurityContext.AllowPrivilegeEscalation && *container.SecurityContext.ReadOnlyRootFilesystem},
	} {
		if !check.ok {
			t.Errorf("%s: job %+v", check.what, job)
		}
	}
	if template.Labels[ComponentLabel] != "hijacked" || len(template.Env) != 1 {
		t.Error("shaping a Job changed the template")
	}
}
