package cluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	// StorageClassName is the cluster's default StorageClass: local volumes on the node, bound
	// when their first pod is scheduled.
	StorageClassName = "local"
	// localVolumes is how many local PersistentVolumes the cluster offers, and localVolumeSize
	// the size of each.
	localVolumes    = 6
	localVolumeSize = "20Gi"
)

// installLocalStorage gives the cluster storage as Kubernetes' local volume static provisioning
// does: a default StorageClass without a provisioner and local PersistentVolumes, each a folder
// of the cluster's own on the node. Claims of the default class bind to them when their pod is
// scheduled; the kubelet mounts them and gives them the pod's fsGroup.
func (c *Cluster) installLocalStorage(ctx context.Context) error {
	c.log("Offering %d local volumes of %s as the default StorageClass %q", localVolumes, localVolumeSize, StorageClassName)
	class := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: StorageClassName, Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
		ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimRetain),
	}
	if _, err := c.Clientset.StorageV1().StorageClasses().Create(ctx, class, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the StorageClass %s: %w", StorageClassName, err)
	}
	for i := range localVolumes {
		name := fmt.Sprintf("local-%d", i)
		dir := c.path("volumes", name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating the folder of volume %s: %w", name, err)
		}
		volume := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(localVolumeSize)},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
				StorageClassName:              StorageClassName,
				PersistentVolumeSource:        corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}},
				NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{NodeName}}},
				}}}},
			},
		}
		if _, err := c.Clientset.CoreV1().PersistentVolumes().Create(ctx, volume, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating the local volume %s: %w", name, err)
		}
	}
	return nil
}

// RegistryRequests counts the requests the cluster's registry has served for repository so far:
// every manifest and blob a pull reads, from its access log.
func (c *Cluster) RegistryRequests(repository string) (int, error) {
	log, err := os.Open(c.logPath(publicRegistry)) // its access log included
	if err != nil {
		return 0, fmt.Errorf("reading the registry's access log: %w", err)
	}
	defer log.Close()
	prefix := "/v2/" + repository + "/"
	requests := 0
	lines := bufio.NewScanner(log)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	for lines.Scan() {
		// Combined log format: ... "GET /v2/<repository>/blobs/sha256:... HTTP/1.1" 200 ...
		_, request, ok := strings.Cut(lines.Text(), `"`)
		if !ok {
			continue
		}
		method, rest, _ := strings.Cut(request, " ")
		if (method == "GET" || method == "HEAD") && strings.HasPrefix(rest, prefix) {
			requests++
		}
	}
	if err := lines.Err(); err != nil {
		return 0, fmt.Errorf("reading the registry's access log: %w", err)
	}
	return requests, nil
}
