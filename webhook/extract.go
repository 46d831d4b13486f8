package webhook

import (
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/vigil-dev/vigil/pkg/digest"
)

// ImageRecord is one image reference that a workload in a namespace uses, with the credentials
// that can pull it there.
type ImageRecord struct {
	// Image is the reference as written in the pod spec.
	Image string
	// Digest is the image's digest when it is known, from a running container's imageID or a
	// reference that pins it; empty otherwise.
	Digest string
	// Namespace is the workload's namespace.
	Namespace string
	// ServiceAccountName is the pod's service account, whose imagePullSecrets can pull the image.
	ServiceAccountName string
	// ImagePullSecrets are the pod's own pull secrets.
	ImagePullSecrets []string
}

// key identifies a record for de-duplication: the same image in the same namespace.
func (r ImageRecord) key() string {
	return r.Namespace + "\x00" + r.Image + "\x00" + r.Digest
}

// podSpec holds the fields of a core/v1 PodSpec that name images and pull credentials; decoding
// only these keeps the answer fast for large objects.
type podSpec struct {
	ServiceAccountName  string           `json:"serviceAccountName"`
	ImagePullSecrets    []localObjectRef `json:"imagePullSecrets"`
	Containers          []containerImage `json:"containers"`
	InitContainers      []containerImage `json:"initContainers"`
	EphemeralContainers []containerImage `json:"ephemeralContainers"`
}

type localObjectRef struct {
	Name string `json:"name"`
}

type containerImage struct {
	Image string `json:"image"`
}

type objectMeta struct {
	Namespace string `json:"namespace"`
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
// pod's namespace (namespace when the object has none) and pull credentials.
func ExtractImages(kind schema.GroupVersionKind, namespace string, raw []byte) ([]ImageRecord, error) {
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
	serviceAccount := spec.ServiceAccountName
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	var secrets []string
	for _, secret := range spec.ImagePullSecrets {
		if secret.Name != "" && !slices.Contains(secrets, secret.Name) {
			secrets = append(secrets, secret.Name)
		}
	}
	var records []ImageRecord
	for _, containers := range [][]containerImage{spec.InitContainers, spec.Containers, spec.EphemeralContainers} {
		for _, container := range containers {
			if container.Image == "" || slices.ContainsFunc(records, func(r ImageRecord) bool { return r.Image == container.Image }) {
				continue
			}
			records = append(records, ImageRecord{
				Image: container.Image, Namespace: namespace, ServiceAccountName: serviceAccount, ImagePullSecrets: secrets,
			})
		}
	}
	return records, nil
}

// PodRecords are the images of a pod that runs or is about to: a running or waiting container
// with an imageID is recorded with its digest, any other container by its spec reference.
// Terminated containers are not recorded.
func PodRecords(pod *corev1.Pod) []ImageRecord {
	serviceAccount := pod.Spec.ServiceAccountName
	if serviceAccount == "" {
		serviceAccount = "default"
	}
	var secrets []string
	for _, secret := range pod.Spec.ImagePullSecrets {
		if secret.Name != "" && !slices.Contains(secrets, secret.Name) {
			secrets = append(secrets, secret.Name)
		}
	}
	statuses := map[string]corev1.ContainerStatus{}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, status := range list {
			statuses[status.Name] = status
		}
	}
	var records []ImageRecord
	add := func(name, image string) {
		record := ImageRecord{Image: image, Namespace: pod.Namespace, ServiceAccountName: serviceAccount, ImagePullSecrets: secrets}
		if status, ok := statuses[name]; ok {
			if status.State.Terminated != nil {
				return
			}
			record.Digest = digest.FromImageID(status.ImageID)
		}
		if record.Image == "" || slices.ContainsFunc(records, func(r ImageRecord) bool { return r.key() == record.key() }) {
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
