package executor

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/vigil-dev/vigil/pkg/sbom"
)

func TestTheScanJobCarriesTheManagersScanSettings(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, noCloud := range []bool{false, true} {
		jobs := NewJobs(nil, nil, JobOptions{
			Namespace: "vigil-system", Image: "vigil:1", Timeout: time.Minute,
			Scan: sbom.Options{NoCloudCredentials: noCloud, MaxLayers: 7},
		}, nil)
		job := jobs.job(JobName(digest, testScanUID, 3), Request{Digest: digest, Attempt: 3}, []string{"registry.example/app@" + digest})
		container := job.Spec.Template.Spec.Containers[0]
		if len(container.Command) != 1 || container.Command[0] != "/vigil-scanner" || container.Args[0] != "scan-job" {
			t.Errorf("the Job runs %v %v; the image's scan engine is /vigil-scanner scan-job", container.Command, container.Args[:1])
		}
		args := container.Args
		if slices.Contains(args, "--no-cloud-credentials") != noCloud {
			t.Errorf("cloud credentials off %v, the Job's arguments are %v", noCloud, args)
		}
		if !slices.Contains(args, "--max-image-layers=7") {
			t.Errorf("the Job does not carry the manager's layer bound: %v", args)
		}
		if job.Name != "vigil-scan-"+strings.Repeat("ab", 16)+"-5c1b2f0e-3" || job.Annotations[AttemptAnnotation] != "3" || job.Annotations[DigestAnnotation] != digest {
			t.Errorf("the Job of attempt 3 is %s with annotations %v", job.Name, job.Annotations)
		}
		if spec := job.Spec.Template.Spec; spec.EnableServiceLinks == nil || *spec.EnableServiceLinks || *spec.AutomountServiceAccountToken {
			t.Error("a scan pod gets service links or an API token")
		}
	}
}

func TestTheScanJobTellsTheGoRuntimeItsMemoryLimit(t *testing.T) {
	digest := "sha256:" + strings.Repeat("cd", 32)
	for _, tc := range []struct {
		name      string
		resources corev1.ResourceRequirements
		limited   bool
	}{
		{"no limit", corev1.ResourceRequirements{}, false},
		{"a CPU limit only", corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}, false},
		{"a memory limit", corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jobs := NewJobs(nil, nil, JobOptions{Namespace: "vigil-system", Image: "vigil:1", Timeout: time.Minute, Resources: tc.resources}, nil)
			container := jobs.job(JobName(digest, testScanUID, 1), Request{Digest: digest, Attempt: 1}, []string{"registry.example/app@" + digest}).Spec.Template.Spec.Containers[0]
			var limit *corev1.EnvVar
			for i := range container.Env {
				if container.Env[i].Name == "GOMEMLIMIT" {
					limit = &container.Env[i]
				}
			}
			if (limit != nil) != tc.limited {
				t.Fatalf("GOMEMLIMIT set %v, want %v: %v", limit != nil, tc.limited, container.Env)
			}
			if limit != nil {
				ref := limit.ValueFrom.ResourceFieldRef
				if ref == nil || ref.ContainerName != container.Name || ref.Resource != "limits.memory" {
					t.Errorf("GOMEMLIMIT comes from %+v, want the scan container's memory limit", limit.ValueFrom)
				}
			}
		})
	}
}
