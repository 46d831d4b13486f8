package webhook

import (
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/vigil-dev/vigil/pkg/digest"
	"github.com/vigil-dev/vigil/pkg/recorder"
)

// podSpec holds the fields of a core/v1 PodSpec that name images; decoding only these keeps the
// answer fast for large objects. Pull credentials are never taken from a request: the scan
// reconciler reads the workload itself.
type podSpec struct {
	Containers          []containerImage `json:"containers"`
	InitContainers      []containerImage `json:"initContainers"`
	EphemeralContainers []containerImage `json:"ephemeralContainers"`
}

type containerImage struct {
	Image string `json:"image"`
}

type objectMeta struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

type podTemplate struct {
	Spec podSpec `json:"spec"`
}

// The admitted objects, by the path to their pod spec.
type (
	podObject struct {
		Metadata objectMeta `json:"metadata"`
		Spec     podSpec    `json:"spec"`
	}
	templateObject struct {
		Metadata objectMeta `json:"metadata"`
		Spec     struct {
			Template podTemplate `json:"template"`
		} `json:"spec"`
	}
	cronJobObject struct {
		Metadata objectMeta `json:"metadata"`
		Spec     struct {
			JobTemplate struct {
				Spec struct {
					Template podTemplate `json:"template"`
				} `json:"spec"`
			} `json:"jobTemplate"`
		} `json:"spec"`
	}
)

// ErrUnknownKind is wrapped by ExtractImages for a kind that has no pod spec.
var ErrUnknownKind = fmt.Errorf("not a kind with a pod spec")

// ExtractImages returns the images of a Pod or of the pod template of a Deployment,
// StatefulSet, DaemonSet, ReplicaSet, Job or CronJob, from the object's JSON, each once, with the
// object's namespace and name (namespace and name when the object has none).
func ExtractImages(kind schema.GroupVersionKind, namespace, name string, raw []byte) ([]recorder.ImageRecord, error) {
	var meta objectMeta
	var spec podSpec
	switch kind.GroupKind() {
	case schema.GroupKind{Kind: "Pod"}:
		var pod podObject
		if err := json.Unmarshal(raw, &pod); err != nil {
			return nil, fmt.Errorf("decoding the Pod: %w", err)
		}
		meta, spec = pod.Metadata, pod.Spec
	case schema.GroupKind{Group: "apps", Kind: "Deployment"}, schema.GroupKind{Group: "apps", Kind: "StatefulSet"},
		schema.GroupKind{Group: "apps", Kind: "DaemonSet"}, schema.GroupKind{Group: "apps", Kind: "ReplicaSet"},
		schema.GroupKind{Group: "batch", Kind: "Job"}:
		var workload templateObject
		if err := json.Unmarshal(raw, &workload); err != nil {
			return nil, fmt.Errorf("decoding the %s: %w", kind.Kind, err)
		}
		meta, spec = workload.Metadata, workload.Spec.Template.Spec
	case schema.GroupKind{Group: "batch", Kind: "CronJob"}:
		var cronJob cronJobObject
		if err := json.Unmarshal(raw, &cronJob); err != nil {
			return nil, fmt.Errorf("decoding the CronJob: %w", err)
		}
		meta, spec = cronJob.Metadata, cronJob.Spec.JobTemplate.Spec.Template.Spec
	default:
		return nil, fmt.Errorf("%s: %w", kind, ErrUnknownKind)
	}
	if meta.Namespace != "" {
		namespace = meta.Namespace
	}
	if meta.Name != "" {
		name = meta.Name
	}
	var records []recorder.ImageRecord
	for _, containers := range [][]containerImage{spec.InitContainers, spec.Containers, spec.EphemeralContainers} {
		for _, container := range containers {
			if container.Image == "" || slices.ContainsFunc(records, func(r recorder.ImageRecord) bool { return r.Image == container.Image }) {
				continue
			}
			records = append(records, recorder.ImageRecord{
				Image: container.Image, Namespace: namespace, WorkloadKind: kind.Kind, WorkloadName: name,
			})
		}
	}
	return records, nil
}

// PodRecords are the images of a pod that runs or is about to: a running or waiting container
// with an imageID is recorded with its digest, any other container by its spec reference.
// Terminated containers are not recorded.
func PodRecords(pod *corev1.Pod) []recorder.ImageRecord {
	statuses := map[string]corev1.ContainerStatus{}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, status := range list {
			statuses[status.Name] = status
		}
	}
	var records []recorder.ImageRecord
	add := func(name, image string) {
		record := recorder.ImageRecord{Image: image, Namespace: pod.Namespace, WorkloadKind: "Pod", WorkloadName: pod.Name}
		if status, ok := statuses[name]; ok {
			if status.State.Terminated != nil {
				return
			}
			record.Digest = digest.FromImageID(status.ImageID)
		}
		if record.Image == "" || slices.ContainsFunc(records, func(r recorder.ImageRecord) bool { return r.Image == record.Image && r.Digest == record.Digest }) {
			return
		}
		records = append(records, record)
	}
	for _, c := range pod.Spec.InitContainers {
		add(c.Name, c.Image)
	}
	for _, c := range pod.Spec.Containers {
		add(c.Name, c.Image)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		add(c.Name, c.Image)
	}
	return records
}
