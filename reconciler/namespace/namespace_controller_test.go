package namespace

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

func TestReconcile(t *testing.T) {
	scheme := clientgoscheme.Scheme
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

func TestEventsAreMappedToTheirNamespace(t *testing.T) {
	roleBinding := func(namespace, name string) client.Object {
		return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	}
	project := &unstructured.Unstructured{}
	project.SetGroupVersionKind(ProjectGVK)
	project.SetName("shop")
	tests := []struct {
		name        string
		object      client.Object
		wantWatched bool // by the RoleBinding watch's predicate
		want        string
	}{
		{name: "Vigil's RoleBinding wakes its namespace", object: roleBinding("shop", RoleBindingName), wantWatched: true, want: "shop"},
		{name: "another RoleBinding is not watched", object: roleBinding("shop", "admins"), want: "shop"},
		{name: "an OpenShift Project wakes the namespace it is named after", object: project, wantWatched: true, want: "shop"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, isRoleBinding := tc.object.(*rbacv1.RoleBinding); isRoleBinding && isVigilsRoleBinding(tc.object) != tc.wantWatched {
				t.Errorf("watched: %t, want %t", !tc.wantWatched, tc.wantWatched)
			}
			want := []reconcile.Request{{NamespacedName: types.NamespacedName{Name: tc.want}}}
			if got := namespaceOf(t.Context(), tc.object); !slices.Equal(got, want) {
				t.Errorf("requests %v, want %v", got, want)
			}
		})
	}
}

func TestReconcileRepairsARoleBindingThatDrifted(t *testing.T) {
	scheme := clientgoscheme.Scheme
	right := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "vigil-pull-secret-reader"}
	subjects := []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "vigil-system", Name: "vigil"}}
	tests := []struct {
		name       string
		labels     map[string]string
		roleRef    rbacv1.RoleRef
		wantPasses int // reconciles until it is right; all but the last ask to be requeued
		wantLabels map[string]string
	}{
		{
			name: "one bound to another ClusterRole is replaced", labels: map[string]string{ManagedByLabel: ManagedByValue},
			roleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"}, wantPasses: 2,
			wantLabels: map[string]string{ManagedByLabel: ManagedByValue},
		},
		{
			name: "one without labels is marked as Vigil's", roleRef: right, wantPasses: 1,
			wantLabels: map[string]string{ManagedByLabel: ManagedByValue},
		},
		{
			name: "one with labels of its own is marked as Vigil's, and keeps them", labels: map[string]string{"team": "payments"},
			roleRef: right, wantPasses: 1,
			wantLabels: map[string]string{ManagedByLabel: ManagedByValue, "team": "payments"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			existing := &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: RoleBindingName, Labels: tc.labels},
				RoleRef:    tc.roleRef, Subjects: subjects,
			}
			r := &Reconciler{
				Client: fake.NewClientBuilder().WithScheme(scheme).
					WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, existing).Build(),
				ClusterRoleName: "vigil-pull-secret-reader", ServiceAccountName: "vigil", Namespace: "vigil-system",
			}
			for pass := 1; pass <= tc.wantPasses; pass++ {
				result, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "shop"}})
				if err != nil {
					t.Fatal(err)
				}
				if requeued := !result.IsZero(); requeued != (pass < tc.wantPasses) {
					t.Fatalf("pass %d: result %+v", pass, result)
				}
			}
			binding := &rbacv1.RoleBinding{}
			if err := r.Client.Get(t.Context(), client.ObjectKeyFromObject(existing), binding); err != nil {
				t.Fatal(err)
			}
			if binding.RoleRef != right || !slices.Equal(binding.Subjects, subjects) || !maps.Equal(binding.Labels, tc.wantLabels) {
				t.Errorf("RoleBinding %+v, want roleRef %+v, subjects %+v, labels %v", binding, right, subjects, tc.wantLabels)
			}
		})
	}
}

func TestReconcileSaysWhyItFailed(t *testing.T) {
	scheme := clientgoscheme.Scheme
	roleBindings := schema.GroupResource{Group: rbacv1.GroupName, Resource: "rolebindings"}
	forbidden := apierrors.NewForbidden(roleBindings, RoleBindingName, errors.New("denied"))
	notFound := apierrors.NewNotFound(roleBindings, RoleBindingName)
	alreadyExists := apierrors.NewAlreadyExists(roleBindings, RoleBindingName)
	binding := func(clusterRole string) *rbacv1.RoleBinding {
		return &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: RoleBindingName, Labels: map[string]string{ManagedByLabel: ManagedByValue}},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "elsewhere", Name: "intruder"}},
		}
	}
	optOut := map[string]string{vigilv1alpha1.ScanningLabel: vigilv1alpha1.ScanningDisabled}
	tests := []struct {
		name    string
		labels  map[string]string // the namespace's
		binding *rbacv1.RoleBinding
		funcs   interceptor.Funcs
		wantErr string // empty: no error
	}{
		{
			name: "the namespace cannot be read",
			funcs: interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, object client.Object, options ...client.GetOption) error {
				if _, ok := object.(*corev1.Namespace); ok {
					return errors.New("connection refused")
				}
				return c.Get(ctx, key, object, options...)
			}},
			wantErr: "connection refused",
		},
		{
			name: "the RoleBinding cannot be read",
			funcs: interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, object client.Object, options ...client.GetOption) error {
				if _, ok := object.(*rbacv1.RoleBinding); ok {
					return forbidden
				}
				return c.Get(ctx, key, object, options...)
			}},
			wantErr: "reading RoleBinding shop/" + RoleBindingName,
		},
		{
			name:    "the RoleBinding cannot be created",
			funcs:   interceptor.Funcs{Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error { return forbidden }},
			wantErr: "creating RoleBinding shop/" + RoleBindingName,
		},
		{
			// Another replica created it meanwhile; its watch brings the namespace back.
			name: "the RoleBinding was created meanwhile",
			funcs: interceptor.Funcs{Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
				return alreadyExists
			}},
		},
		{
			name: "an opted-out namespace's RoleBinding cannot be deleted", labels: optOut, binding: binding("vigil-pull-secret-reader"),
			funcs:   interceptor.Funcs{Delete: func(context.Context, client.WithWatch, client.Object, ...client.DeleteOption) error { return forbidden }},
			wantErr: "deleting RoleBinding shop/" + RoleBindingName,
		},
		{
			name: "an opted-out namespace's RoleBinding was deleted meanwhile", labels: optOut, binding: binding("vigil-pull-secret-reader"),
			funcs: interceptor.Funcs{Delete: func(context.Context, client.WithWatch, client.Object, ...client.DeleteOption) error { return notFound }},
		},
		{
			name: "a RoleBinding bound to another ClusterRole cannot be replaced", binding: binding("cluster-admin"),
			funcs:   interceptor.Funcs{Delete: func(context.Context, client.WithWatch, client.Object, ...client.DeleteOption) error { return forbidden }},
			wantErr: "replacing RoleBinding shop/" + RoleBindingName,
		},
		{
			name: "a drifted RoleBinding cannot be repaired", binding: binding("vigil-pull-secret-reader"),
			funcs:   interceptor.Funcs{Update: func(context.Context, client.WithWatch, client.Object, ...client.UpdateOption) error { return forbidden }},
			wantErr: "repairing RoleBinding shop/" + RoleBindingName,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objects := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: tc.labels}}}
			if tc.binding != nil {
				objects = append(objects, tc.binding)
			}
			r := &Reconciler{
				Client:          fake.NewClientBuilder().WithScheme(scheme).WithObjects(objects...).WithInterceptorFuncs(tc.funcs).Build(),
				ClusterRoleName: "vigil-pull-secret-reader", ServiceAccountName: "vigil", Namespace: "vigil-system",
			}
			_, err := r.Reconcile(t.Context(), ctrl.Request{NamespacedName: types.NamespacedName{Name: "shop"}})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one that says %q", err, tc.wantErr)
			}
		})
	}
}

func TestServesOpenShiftProjects(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		kinds   []string // the kinds served under project.openshift.io/v1
		want    bool
		wantErr bool
	}{
		{name: "OpenShift serves Projects", status: http.StatusOK, kinds: []string{"ProjectRequest", "Project"}, want: true},
		{name: "a group of that name without Projects", status: http.StatusOK, kinds: []string{"ProjectRequest"}},
		{name: "another Kubernetes does not serve the group", status: http.StatusNotFound},
		{name: "an API server that fails is an error", status: http.StatusForbidden, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/apis/project.openshift.io/v1" || tc.status != http.StatusOK {
					http.Error(w, "no", cmp.Or(tc.status, http.StatusNotFound))
					return
				}
				list := metav1.APIResourceList{GroupVersion: "project.openshift.io/v1"}
				for _, kind := range tc.kinds {
					list.APIResources = append(list.APIResources, metav1.APIResource{Name: strings.ToLower(kind) + "s", Kind: kind})
				}
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(list)
			}))
			defer server.Close()
			got, err := ServesOpenShiftProjects(&rest.Config{Host: server.URL})
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ServesOpenShiftProjects = %t, %v; want %t, error: %t", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
