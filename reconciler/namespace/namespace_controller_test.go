package namespace

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

func TestReconcile(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	reconciler := func(objects ...client.Object) *Reconciler {
		return &Reconciler{
			Client:          fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects...).Build(),
			ClusterRoleName: "vigil-pull-secret-reader", ServiceAccountName: "vigil", Namespace: "vigil-system",
			ExcludedNamespaces: sets.New("vigil-system", "kube-system"),
		}
	}
	namespace := func(name string, labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	optOut := map[string]string{vigilv1alpha1.ScanningLabel: vigilv1alpha1.ScanningDisabled}
	drifted := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: RoleBindingName, Labels: map[string]string{ManagedByLabel: ManagedByValue}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "vigil-pull-secret-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "elsewhere", Name: "intruder"}},
	}
	excludedBinding := drifted.DeepCopy()
	excludedBinding.Namespace = "kube-system"
	tests := []struct {
		name        string
		objects     []client.Object
		namespace   string
		wantBinding bool
	}{
		{"a namespace that scans gets its RoleBinding", []client.Object{namespace("shop", nil)}, "shop", true},
		{"a namespace that opted out loses it", []client.Object{namespace("shop", optOut), drifted}, "shop", false},
		{"a drifted RoleBinding is repaired", []client.Object{namespace("shop", nil), drifted}, "shop", true},
		{"Vigil's own namespace gets none", []client.Object{namespace("vigil-system", nil)}, "vigil-system", false},
		{"an excluded namespace gets none", []client.Object{namespace("kube-system", nil)}, "kube-system", false},
		{"an excluded namespace loses the one Vigil made", []client.Object{namespace("kube-system", nil), excludedBinding}, "kube-system", false},
		{"a namespace that is gone gets none", nil, "gone", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := reconciler(tc.objects...)
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: tc.namespace}}); err != nil {
				t.Fatal(err)
			}
			binding := &rbacv1.RoleBinding{}
			err := r.Client.Get(context.Background(), client.ObjectKey{Namespace: tc.namespace, Name: RoleBindingName}, binding)
			if !tc.wantBinding {
				if !apierrors.IsNotFound(err) {
					t.Errorf("a RoleBinding exists: %v %+v", err, binding)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "vigil-system", Name: "vigil"}}
			if len(binding.Subjects) != 1 || binding.Subjects[0] != want[0] || binding.RoleRef.Name != "vigil-pull-secret-reader" {
				t.Errorf("RoleBinding = %+v", binding)
			}
			// A second pass changes nothing.
			version := binding.ResourceVersion
			if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Name: tc.namespace}}); err != nil {
				t.Fatal(err)
			}
			if err := r.Client.Get(context.Background(), client.ObjectKeyFromObject(binding), binding); err != nil || binding.ResourceVersion != version {
				t.Errorf("the second pass wrote the RoleBinding again (%v)", err)
			}
		})
	}
}
