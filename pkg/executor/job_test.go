package executor

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/pkg/sbom"
)

func TestTheScanJobCarriesTheManagersScanSettings(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	for _, noCloud := range []bool{false, true} {
		jobs := NewJobs(nil, nil, JobOptions{
			Namespace: "vigil-system", Image: "vigil:1", Timeout: time.Minute,
			Scan: sbom.Options{NoCloudCredentials: noCloud, MaxLayers: 7},
		}, nil)
		job := jobs.job(JobName(digest, 3), Request{Digest: digest, Attempt: 3}, []string{"registry.example/app@" + digest})
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
		if job.Name != "vigil-scan-"+strings.Repeat("ab", 20)+"-3" || job.Annotations[AttemptAnnotation] != "3" || job.Annotations[DigestAnnotation] != digest {
			t.Errorf("the Job of attempt 3 is %s with annotations %v", job.Name, job.Annotations)
		}
		if spec := job.Spec.Template.Spec; spec.EnableServiceLinks == nil || *spec.EnableServiceLinks || *spec.AutomountServiceAccountToken {
			t.Error("a scan pod gets service links or an API token")
		}
	}
}
