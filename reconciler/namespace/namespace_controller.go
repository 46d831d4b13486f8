package namespace

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

const (
	// RoleBindingName is the name of the RoleBinding Vigil keeps in each namespace.
	RoleBindingName = "vigil-pull-secrets"
	// ManagedByLabel marks the RoleBindings Vigil keeps; the manager caches only those.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedByValue is ManagedByLabel's value.
	ManagedByValue = "vigil"
)

// ProjectGVK is OpenShift's Project, watched when the cluster serves project.openshift.io.
var ProjectGVK = schema.GroupVersionKind{Group: "project.openshift.io", Version: "v1", Kind: "Project"}

// Reconciler keeps the RoleBinding of each namespace.
type Reconciler struct {
	Client client.Client
	// ClusterRoleName is the ClusterRole the RoleBindings bind: get on secrets and serviceaccounts
	// (installed by the Helm chart).
	ClusterRoleName string
	// ExcludedNamespaces get no scanning RBAC, as Vigil's own namespace; a RoleBinding left there
	// by Vigil is removed.
	ExcludedNamespaces sets.Set[string]
	// ServiceAccountName and Namespace are Vigil's own service account and namespace.
	ServiceAccountName string
	Namespace          string
}

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// RoleBindings are read, changed and deleted only by Vigil's own name (the manager's cache
// selects that name); create cannot be limited by name, the API server only knows the name
// from the request body, so create is granted in every namespace.
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=rolebindings,verbs=get;list;watch;update;patch;delete,resourceNames=vigil-pull-secrets
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles,verbs=bind,resourceNames=vigil-pull-secret-reader
// +kubebuilder:rbac:groups=project.openshift.io,resources=projects,verbs=get;list;watch

// SetupWithManager registers the reconciler; with openShift it also watches Projects.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, openShift bool) error {
	toNamespace := handler.EnqueueRequestsFromMapFunc(namespaceOf)
	b := ctrl.NewControllerManagedBy(mgr).
		Named("namespaces").
		For(&corev1.Namespace{}).
		Watches(&rbacv1.RoleBinding{}, toNamespace, builder.WithPredicates(predicate.NewPredicateFuncs(isVigilsRoleBinding)))
	if openShift {
		project := &unstructured.Unstructured{}
		project.SetGroupVersionKind(ProjectGVK)
		b = b.Watches(project, toNamespace)
	}
	return b.Complete(r)
}

// namespaceOf maps a RoleBinding, or an OpenShift Project, to the namespace it belongs to.
func namespaceOf(_ context.Context, object client.Object) []reconcile.Request {
	name := object.GetNamespace()
	if name == "" {
		name = object.GetName() // a Project is named after its namespace
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: name}}}
}

// isVigilsRoleBinding tells whether a RoleBinding bears the name of the one Vigil keeps.
func isVigilsRoleBinding(object client.Object) bool {
	return object.GetName() == RoleBindingName
}

// ServesOpenShiftProjects tells whether the API server serves project.openshift.io Projects.
func ServesOpenShiftProjects(config *rest.Config) (bool, error) {
	client, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		return false, fmt.Errorf("creating a discovery client: %w", err)
	}
	resources, err := client.ServerResourcesForGroupVersion(ProjectGVK.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovering %s: %w", ProjectGVK.GroupVersion(), err)
	}
	for _, resource := range resources.APIResources {
		if resource.Kind == ProjectGVK.Kind {
			return true, nil
		}
	}
	return false, nil
}

// Reconcile makes one namespace's RoleBinding what it should be: present and exact in a namespace
// that scans, absent in one that opts out.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	namespace := &corev1.Namespace{}
	if err := r.Client.Get(ctx, req.NamespacedName, namespace); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	key := client.ObjectKey{Namespace: namespace.Name, Name: RoleBindingName}
	current := &rbacv1.RoleBinding{}
	err := r.Client.Get(ctx, key, current)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("reading RoleBinding %s: %w", klog.KRef(key.Namespace, key.Name), err)
	}
	exists := err == nil
	logger := log.FromContext(ctx)

	wanted := namespace.DeletionTimestamp == nil && namespace.Status.Phase != corev1.NamespaceTerminating &&
		namespace.Name != r.Namespace && !r.ExcludedNamespaces.Has(namespace.Name) &&
		namespace.Labels[vigilv1alpha1.ScanningLabel] != vigilv1alpha1.ScanningDisabled
	if !wanted {
		if exists && current.Labels[ManagedByLabel] == ManagedByValue && namespace.DeletionTimestamp == nil {
			if err := r.Client.Delete(ctx, current); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("deleting RoleBinding %s: %w", klog.KObj(current), err)
			}
			logger.Info("Removed the scanning RBAC of a namespace that opted out", "namespace", namespace.Name)
		}
		return ctrl.Result{}, nil
	}

	desired := r.roleBinding(namespace.Name)
	if !exists {
		if err := r.Client.Create(ctx, desired); err != nil && !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, fmt.Errorf("creating RoleBinding %s: %w", klog.KObj(desired), err)
		}
		logger.Info("Set up the scanning RBAC of a namespace", "namespace", namespace.Name)
		return ctrl.Result{}, nil
	}
	if equality.Semantic.DeepEqual(current.RoleRef, desired.RoleRef) &&
		equality.Semantic.DeepEqual(current.Subjects, desired.Subjects) &&
		current.Labels[ManagedByLabel] == ManagedByValue {
		return ctrl.Result{}, nil
	}
	if current.RoleRef != desired.RoleRef {
		// roleRef cannot change: replace the RoleBinding.
		if err := r.Client.Delete(ctx, current); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("replacing RoleBinding %s: %w", klog.KObj(current), err)
		}
		return ctrl.Result{Requeue: true}, nil
	}
	current.Subjects = desired.Subjects
	if current.Labels == nil {
		current.Labels = map[string]string{}
	}
	current.Labels[ManagedByLabel] = ManagedByValue
	if err := r.Client.Update(ctx, current); err != nil {
		return ctrl.Result{}, fmt.Errorf("repairing RoleBinding %s: %w", klog.KObj(current), err)
	}
	logger.Info("Repaired the scanning RBAC of a namespace", "namespace", namespace.Name)
	return ctrl.Result{}, nil
}

func (r *Reconciler) roleBinding(namespace string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: namespace, Name: RoleBindingName,
			Labels: map[string]string{ManagedByLabel: ManagedByValue},
		},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: r.ClusterRoleName},
		Subjects: []rbacv1.Subject{{
			Kind: rbacv1.ServiceAccountKind, Namespace: r.Namespace, Name: r.ServiceAccountName,
		}},
	}
}
