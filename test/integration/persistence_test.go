package integration

import (
	"regexp"
	"testing"

	. "github.com/onsi/gomega"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestTheChartKeepsSBOMsWhereTheClusterProvidesStorage renders the chart's defaults against the
// API server, as `helm install` does (helm's lookup reads the cluster): without a default
// StorageClass the manager is a Deployment whose SBOMs live in an emptyDir; once the cluster has
// one, a StatefulSet whose replicas each claim a volume of that class.
func TestTheChartKeepsSBOMsWhereTheClusterProvidesStorage(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	render := func() string {
		cmd := helmCommand(t, "template", "vigil", "charts/vigil", "--namespace", "vigil-system",
			"--set", "vulnerabilityScanning.enabled=true", "--dry-run=server", "--kubeconfig", env.KubeconfigPath)
		out, err := cmd.CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "helm template: %s", out)
		return string(out)
	}
	manager := regexp.MustCompile(`(?m)^kind: (Deployment|StatefulSet)\nmetadata:\n  name: vigil\n`)
	kindOf := func(out string) string {
		found := manager.FindStringSubmatch(out)
		if found == nil {
			return ""
		}
		return found[1]
	}

	// A class that is not the default provides no storage to claims that name none.
	other := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "slow-hdd"}, Provisioner: "example.com/hdd"}
	g.Expect(env.Client.Create(ctx, other)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(ctx, other) })
	out := render()
	g.Expect(kindOf(out)).To(Equal("Deployment"))
	g.Expect(out).To(ContainSubstring("- name: data\n        emptyDir: {}"))
	g.Expect(out).NotTo(ContainSubstring("volumeClaimTemplates"))

	// The cluster gets a default StorageClass (the shared control plane keeps it only for this
	// story: the chart's other stories expect a cluster without storage).
	standard := &storagev1.StorageClass{
		ObjectMeta:  metav1.ObjectMeta{Name: "standard", Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner: "example.com/ssd",
	}
	g.Expect(env.Client.Create(ctx, standard)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(ctx, standard) })
	out = render()
	g.Expect(kindOf(out)).To(Equal("StatefulSet"))
	g.Expect(out).To(ContainSubstring("volumeClaimTemplates:\n  - metadata:\n      name: data"))
	g.Expect(out).NotTo(ContainSubstring("- name: data\n        emptyDir: {}"), "the data volume is the claim, not an emptyDir")
}
