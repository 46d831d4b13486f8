package imagescan

import (
	"context"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/sbom"
)

// The workloads are read, one at a time and uncached, to find the pull credentials of the images
// they name.
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;daemonsets;replicasets,verbs=get
// +kubebuilder:rbac:groups=batch,resources=jobs;cronjobs,verbs=get
// +kubebuilder:rbac:groups="",resources=pods,verbs=get

// credentials gathers the pull credentials of a reference from objects Vigil reads itself: the
// workload the reference names, re-read from the API server, and only when its pod spec names
// the image; then its pod spec's pull secrets and its service account's. What an admission
// request claimed selects nothing: a reference whose workload is gone, or does not name the
// image, is pulled anonymously. Secrets are read one at a time and only where Vigil's namespace
// setup allows it; a secret that cannot be read is skipped, and its content is never logged.
func (r *Reconciler) credentials(ctx context.Context, reference vigilv1alpha1.ImageReference) []sbom.Credential {
	if reference.Namespace == "" || reference.Workload == nil {
		return nil
	}
	logger := log.FromContext(ctx)
	spec, err := r.podSpecOf(ctx, reference.Namespace, *reference.Workload)
	if err != nil {
		logger.V(1).Info("Cannot read the workload of an image reference; pulling anonymously", "namespace", reference.Namespace,
			"kind", reference.Workload.Kind, "name", reference.Workload.Name, "reason", apierrors.ReasonForError(err))
		return nil
	}
	if !namesImage(spec, reference.Image) {
		logger.Info("The workload of an image reference does not name the image; pulling anonymously", "namespace", reference.Namespace,
			"kind", reference.Workload.Kind, "name", reference.Workload.Name, "image", reference.Image)
		return nil
	}
	var names []string
	for _, secret := range spec.ImagePullSecrets {
		names = append(names, secret.Name)
	}
	serviceAccountName := spec.ServiceAccountName
	if serviceAccountName == "" {
		serviceAccountName = "default"
	}
	account := &corev1.ServiceAccount{}
	err = r.APIReader.Get(ctx, client.ObjectKey{Namespace: reference.Namespace, Name: serviceAccountName}, account)
	if err == nil {
		for _, secret := range account.ImagePullSecrets {
			names = append(names, secret.Name)
		}
	} else if !apierrors.IsNotFound(err) {
		logger.V(1).Info("Cannot read the service account of an image reference", "serviceAccount",
			klog.KRef(reference.Namespace, serviceAccountName), "reason", apierrors.ReasonForError(err))
	}
	var credentials []sbom.Credential
	for _, name := range names {
		secret := &corev1.Secret{}
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: reference.Namespace, Name: name}, secret); err != nil {
			logger.V(1).Info("Cannot read a pull secret", "secret", klog.KRef(reference.Namespace, name), "reason", apierrors.ReasonForError(err))
			continue
		}
		found, err := sbom.CredentialsFromSecret(secret)
		if err != nil {
			logger.Info("Ignoring a pull secret", "secret", klog.KRef(reference.Namespace, name), "error", err.Error())
			continue
		}
		credentials = append(credentials, found...)
	}
	return credentials
}

// podSpecOf reads a workload from the API server and returns its pod spec.
func (r *Reconciler) podSpecOf(ctx context.Context, namespace string, workload vigilv1alpha1.WorkloadReference) (*corev1.PodSpec, error) {
	key := client.ObjectKey{Namespace: namespace, Name: workload.Name}
	switch workload.Kind {
	case "Pod":
		pod := &corev1.Pod{}
		if err := r.APIReader.Get(ctx, key, pod); err != nil {
			return nil, err
		}
		return &pod.Spec, nil
	case "Deployment":
		object := &appsv1.Deployment{}
		if err := r.APIReader.Get(ctx, key, object); err != nil {
			return nil, err
		}
		return &object.Spec.Template.Spec, nil
	case "StatefulSet":
		object := &appsv1.StatefulSet{}
		if err := r.APIReader.Get(ctx, key, object); err != nil {
			return nil, err
		}
		return &object.Spec.Template.Spec, nil
	case "DaemonSet":
		object := &appsv1.DaemonSet{}
		if err := r.APIReader.Get(ctx, key, object); err != nil {
			return nil, err
		}
		return &object.Spec.Template.Spec, nil
	case "ReplicaSet":
		object := &appsv1.ReplicaSet{}
		if err := r.APIReader.Get(ctx, key, object); err != nil {
			return nil, err
		}
		return &object.Spec.Template.Spec, nil
	case "Job":
		object := &batchv1.Job{}
		if err := r.APIReader.Get(ctx, key, object); err != nil {
			return nil, err
		}
		return &object.Spec.Template.Spec, nil
	case "CronJob":
		object := &batchv1.CronJob{}
		if err := r.APIReader.Get(ctx, key, object); err != nil {
			return nil, err
		}
		return &object.Spec.JobTemplate.Spec.Template.Spec, nil
	}
	return nil, fmt.Errorf("workload kind %q has no pod spec", workload.Kind)
}

// namesImage tells whether a container of spec runs image.
func namesImage(spec *corev1.PodSpec, image string) bool {
	byImage := func(c corev1.Container) bool { return c.Image == image }
	if slices.ContainsFunc(spec.Containers, byImage) || slices.ContainsFunc(spec.InitContainers, byImage) {
		return true
	}
	return slices.ContainsFunc(spec.EphemeralContainers, func(c corev1.EphemeralContainer) bool { return c.Image == image })
}
