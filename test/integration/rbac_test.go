package integration

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	namespacesetup "github.com/vigil-dev/vigil/reconciler/namespace"
	"github.com/vigil-dev/vigil/test/testenv"
)

// installChartRBAC renders the chart's service accounts and RBAC for a release named release in
// namespace and creates them, as helm install would; it returns a client that acts as the
// manager's service account.
func installChartRBAC(t *testing.T, release, namespace string) client.Client {
	t.Helper()
	g := NewWithT(t)
	ctx := t.Context()
	root, err := testenv.ModuleRoot()
	g.Expect(err).NotTo(HaveOccurred())
	helm := filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(helm); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("bin/helm is missing (make tools builds it): %v", err)
		}
		t.Skip("bin/helm is not built; run 'make tools'")
	}
	render := exec.Command(helm, "template", release, "charts/vigil", "--namespace", namespace,
		"--show-only", "templates/rbac.yaml", "--show-only", "templates/serviceaccounts.yaml")
	render.Dir = root
	render.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := render.Output()
	g.Expect(err).NotTo(HaveOccurred(), "helm template")

	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())
	decoder := yaml.NewYAMLOrJSONDecoder(strings.NewReader(string(out)), 4096)
	for {
		object := &unstructured.Unstructured{}
		err := decoder.Decode(&object.Object)
		if errors.Is(err, io.EOF) {
			break
		}
		g.Expect(err).NotTo(HaveOccurred(), "reading the rendered chart")
		if len(object.Object) == 0 {
			continue
		}
		g.Expect(env.Client.Create(ctx, object)).To(Succeed(), "creating %s %s", object.GetKind(), object.GetName())
		if object.GetNamespace() == "" {
			t.Cleanup(func() { _ = env.Client.Delete(t.Context(), object) })
		}
	}
	config, err := clientcmd.BuildConfigFromFlags("", serviceAccountKubeconfig(t, namespace, release+"-vigil"))
	g.Expect(err).NotTo(HaveOccurred())
	manager, err := client.New(config, client.Options{Scheme: env.Client.Scheme()})
	g.Expect(err).NotTo(HaveOccurred())
	return manager
}

// As a tenant who got hold of the manager's token (or made the manager act on a forged input),
// I get nothing beyond Vigil's own work: no Job or Secret in another namespace, no foreign
// RoleBinding read, changed or deleted, no RoleBinding that grants more than the pull-secret
// reader, no other component's Lease. The same token does what Vigil needs: Jobs, Secrets and
// its Lease in its own namespace, its RoleBinding in a tenant's namespace.
func TestTheChartsRBACAllowsNothingBeyondVigilsWork(t *testing.T) {
	isolate(t)
	g := NewWithT(t)
	ctx := t.Context()
	const release, home = "guard", "guard-system"
	manager := installChartRBAC(t, release, home)
	tenant := newNamespace(t, nil)

	job := func(namespace string) *batchv1.Job {
		return &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "vigil-scan-attack"},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "scan", Image: "attacker.example/x:1"}},
			}}},
		}
	}
	secret := func(namespace string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "vigil-scan-attack"}, StringData: map[string]string{"a": "b"}}
	}
	binding := func(namespace, name, role string) *rbacv1.RoleBinding {
		return &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: home, Name: release + "-vigil"}},
		}
	}
	lease := func(namespace string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "kube-controller-manager"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("attacker")}}
	}

	// Objects that are not Vigil's, made by the cluster's administrator. (This control plane
	// runs no role aggregation, so admin is empty here: the escalation case uses a role of its
	// own.)
	secretLister := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-secret-lister"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list"}}},
	}
	g.Expect(env.Client.Create(ctx, secretLister)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(t.Context(), secretLister) })
	foreignBinding := binding(tenant, "tenant-admins", "admin")
	g.Expect(env.Client.Create(ctx, foreignBinding)).To(Succeed())
	foreignJob := job(tenant)
	foreignJob.Name = "nightly"
	g.Expect(env.Client.Create(ctx, foreignJob)).To(Succeed())
	foreignLease := lease(tenant)
	g.Expect(env.Client.Create(ctx, foreignLease)).To(Succeed())

	forbidden := []struct {
		attack string
		do     func() error
	}{
		{"create a Job in another namespace", func() error { return manager.Create(ctx, job(tenant)) }},
		{"delete a Job in another namespace", func() error { return manager.Delete(ctx, foreignJob) }},
		{"change a Job in another namespace", func() error {
			return manager.Patch(ctx, foreignJob.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":true}}`)))
		}},
		{"create a Secret in another namespace", func() error { return manager.Create(ctx, secret(tenant)) }},
		{"read a Secret in another namespace", func() error {
			return manager.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "anything"}, &corev1.Secret{})
		}},
		{"delete another RoleBinding", func() error { return manager.Delete(ctx, foreignBinding.DeepCopy()) }},
		{"change another RoleBinding", func() error {
			changed := foreignBinding.DeepCopy()
			changed.Subjects = append(changed.Subjects, rbacv1.Subject{Kind: rbacv1.UserKind, Name: "attacker"})
			return manager.Update(ctx, changed)
		}},
		{"read another RoleBinding", func() error {
			return manager.Get(ctx, client.ObjectKeyFromObject(foreignBinding), &rbacv1.RoleBinding{})
		}},
		{"list every RoleBinding", func() error { return manager.List(ctx, &rbacv1.RoleBindingList{}) }},
		{"bind cluster-admin under Vigil's RoleBinding name", func() error {
			return manager.Create(ctx, binding(tenant, namespacesetup.RoleBindingName, "cluster-admin"))
		}},
		{"bind a role it does not hold under another name", func() error {
			return manager.Create(ctx, binding(tenant, "escalate", secretLister.Name))
		}},
		{"take over another component's Lease", func() error {
			taken := foreignLease.DeepCopy()
			taken.Spec.HolderIdentity = ptr.To("vigil")
			return manager.Update(ctx, taken)
		}},
		{"create a Lease in another namespace", func() error { return manager.Create(ctx, lease("kube-system")) }},
		{"lower another namespace's Pod Security level", func() error {
			return manager.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenant}}, client.RawPatch(types.MergePatchType,
				[]byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`)))
		}},
	}
	for _, tc := range forbidden {
		err := tc.do()
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the manager's RBAC lets it %s: %v", tc.attack, err)
	}

	// RBAC cannot limit the name of a RoleBinding being created: the chart's admission policy
	// holds the manager to its own. (A policy takes effect once the API server has loaded it.)
	reader := release + "-vigil-pull-secret-reader"
	toAttacker := binding(tenant, namespacesetup.RoleBindingName, reader)
	toAttacker.Subjects = []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: tenant, Name: "attacker"}}
	policed := []struct {
		attack string
		do     func() error
	}{
		{"bind the pull-secret reader to the attacker", func() error { return manager.Create(ctx, toAttacker.DeepCopy()) }},
		{"bind the pull-secret reader under another name", func() error { return manager.Create(ctx, binding(tenant, "secrets-for-me", reader)) }},
	}
	g.Eventually(func() bool {
		return apierrors.IsForbidden(manager.Create(ctx, toAttacker.DeepCopy(), client.DryRunAll))
	}, 10*time.Second, 200*time.Millisecond).Should(BeTrue(), "the chart's admission policy is in force")
	for _, tc := range policed {
		err := tc.do()
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the manager's RBAC lets it %s: %v", tc.attack, err)
	}

	// What Vigil needs, with the same token.
	ownJob := job(home)
	g.Expect(manager.Create(ctx, ownJob)).To(Succeed(), "create a scan Job in its namespace")
	g.Expect(manager.Create(ctx, secret(home))).To(Succeed(), "create a scan Job's Secret in its namespace")
	g.Expect(manager.Patch(ctx, ownJob.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"spec":{"suspend":false}}`)))).
		To(Succeed(), "release a scan Job once its Secret exists")
	g.Expect(manager.Delete(ctx, secret(home))).To(Succeed(), "delete a scan Job's Secret")
	g.Expect(manager.Delete(ctx, ownJob)).To(Succeed(), "delete a scan Job")
	g.Expect(manager.Create(ctx, lease(home))).To(Succeed(), "create its leader-election Lease")
	g.Expect(manager.List(ctx, &batchv1.JobList{})).To(Succeed(), "list Jobs cluster-wide for workload resolution")
	own := binding(tenant, namespacesetup.RoleBindingName, release+"-vigil-pull-secret-reader")
	g.Expect(manager.Create(ctx, own)).To(Succeed(), "bind the pull-secret reader in a tenant's namespace")
	g.Expect(manager.Get(ctx, client.ObjectKeyFromObject(own), &rbacv1.RoleBinding{})).To(Succeed(), "read its RoleBinding")
	g.Expect(manager.List(ctx, &rbacv1.RoleBindingList{}, client.MatchingFields{"metadata.name": namespacesetup.RoleBindingName})).
		To(Succeed(), "list its RoleBindings by name, as its cache does")
	g.Expect(manager.Delete(ctx, own)).To(Succeed(), "delete its RoleBinding")
	g.Expect(manager.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: home}}, client.RawPatch(types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted"}}}`)))).
		To(Succeed(), "label its own namespace for Pod Security Admission")
}
