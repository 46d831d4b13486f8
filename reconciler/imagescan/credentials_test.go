package imagescan

import (
	"context"
	"fmt"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

const shopImage = "registry.example/shop/api:1.4"

// pullSecret is a dockerconfigjson Secret in namespace shop that logs user in to registry.example.
func pullSecret(name, user string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: fmt.Appendf(nil,
			`{"auths":{"registry.example":{"username":%q,"password":"secret"}}}`, user)},
	}
}

func podSpecNaming(image string, secrets ...string) corev1.PodSpec {
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "api", Image: image}}}
	for _, s := range secrets {
		spec.ImagePullSecrets = append(spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	return spec
}

func templateNaming(image string, secrets ...string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{Spec: podSpecNaming(image, secrets...)}
}

func TestAReferenceIsPulledWithItsOwnWorkloadsCredentials(t *testing.T) {
	meta := metav1.ObjectMeta{Namespace: "shop", Name: "api"}
	workloads := map[string]client.Object{
		"Pod":         &corev1.Pod{ObjectMeta: meta, Spec: podSpecNaming(shopImage, "workload")},
		"Deployment":  &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Template: templateNaming(shopImage, "workload")}},
		"StatefulSet": &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Template: templateNaming(shopImage, "workload")}},
		"DaemonSet":   &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: templateNaming(shopImage, "workload")}},
		"ReplicaSet":  &appsv1.ReplicaSet{ObjectMeta: meta, Spec: appsv1.ReplicaSetSpec{Template: templateNaming(shopImage, "workload")}},
		"Job":         &batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Template: templateNaming(shopImage, "workload")}},
		"CronJob": &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{
			Spec: batchv1.JobSpec{Template: templateNaming(shopImage, "workload")}}}},
	}
	for kind, workload := range workloads {
		t.Run(kind, func(t *testing.T) {
			account := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default"},
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "account"}}}
			r := newReconciler(t, &fakeExecutor{}, fakeStore{}, workload, account, pullSecret("workload", "from-workload"), pullSecret("account", "from-account"))
			got := r.credentials(context.Background(), vigilv1alpha1.ImageReference{Image: shopImage, Namespace: "shop",
				Workload: &vigilv1alpha1.WorkloadReference{Kind: kind, Name: "api"}})
			var users []string
			for _, c := range got {
				users = append(users, c.Username)
			}
			if !slices.Equal(users, []string{"from-workload", "from-account"}) {
				t.Errorf("credentials of users %v, want the workload's then its service account's", users)
			}
		})
	}
}

func TestWhenAReferenceIsPulledAnonymously(t *testing.T) {
	deployment := func(name, image, account string, secrets ...string) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
			Spec: appsv1.DeploymentSpec{Template: templateNaming(image, secrets...)}}
		d.Spec.Template.Spec.ServiceAccountName = account
		return d
	}
	withInit := deployment("init", "busybox:1", "", "workload")
	withInit.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: shopImage}}
	withEphemeral := deployment("debug", "busybox:1", "", "workload")
	withEphemeral.Spec.Template.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: shopImage}}}
	notAPullSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "opaque"}, Type: corev1.SecretTypeOpaque}
	objects := []client.Object{
		deployment("api", shopImage, "builder", "workload", "missing", "opaque"),
		deployment("other", "registry.example/other:1", "", "workload"),
		withInit, withEphemeral,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "builder"}, ImagePullSecrets: []corev1.LocalObjectReference{{Name: "account"}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default"}, ImagePullSecrets: []corev1.LocalObjectReference{{Name: "default-account"}}},
		pullSecret("workload", "from-workload"), pullSecret("account", "from-account"), pullSecret("default-account", "from-default"), notAPullSecret,
	}
	tests := []struct {
		name      string
		reference vigilv1alpha1.ImageReference
		wantUsers []string
	}{
		{name: "a reference without a workload", reference: vigilv1alpha1.ImageReference{Image: shopImage, Namespace: "shop"}},
		{name: "a reference without a namespace", reference: vigilv1alpha1.ImageReference{Image: shopImage,
			Workload: &vigilv1alpha1.WorkloadReference{Kind: "Deployment", Name: "api"}}},
		{name: "a workload that is gone", reference: vigilv1alpha1.ImageReference{Image: shopImage, Namespace: "shop",
			Workload: &vigilv1alpha1.WorkloadReference{Kind: "Deployment", Name: "gone"}}},
		{name: "a kind without a pod spec", reference: vigilv1alpha1.ImageReference{Image: shopImage, Namespace: "shop",
			Workload: &vigilv1alpha1.WorkloadReference{Kind: "Service", Name: "api"}}},
		{name: "a workload that does not run the image lends it no credentials", reference: vigilv1alpha1.ImageReference{Image: shopImage, Namespace: "shop",
			Workload: &vigilv1alpha1.WorkloadReference{Kind: "Deployment", Name: "other"}}},
		{name: "the named service account's secrets; missing and foreign secrets skipped", reference: vigilv1alpha1.ImageReference{Image: shopImage, Namespace: "shop",
			Workload: &vigilv1alpha1.WorkloadReference{Kind: "Deployment", Name: "api"}}, wantUsers: []string{"from-workload", "from-account"}},
		{name: "an init container's image", reference: vigilv1alpha1.ImageReference{Image: shopImage, Namespace: "shop",
			Workload: &vigilv1alpha1.WorkloadReference{Kind: "Deployment", Name: "init"}}, wantUsers: []string{"from-workload", "from-default"}},
		{name: "an ephemeral container's image", reference: vigilv1alpha1.ImageReference{Image: shopImage, Namespace: "shop",
			Workload: &vigilv1alpha1.WorkloadReference{Kind: "Deployment", Name: "debug"}}, wantUsers: []string{"from-workload", "from-default"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReconciler(t, &fakeExecutor{}, fakeStore{}, objects...)
			var users []string
			for _, c := range r.credentials(context.Background(), tc.reference) {
				users = append(users, c.Username)
			}
			if !slices.Equal(users, tc.wantUsers) {
				t.Errorf("credentials of users %v, want %v", users, tc.wantUsers)
			}
		})
	}
}
