package testenv

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// The test control plane runs no controller manager and no kubelet. These helpers do their part
// of the work: they create the ReplicaSet and Pods of a Deployment, and set the Pods' status the
// way a kubelet does once their containers run.

// RunDeployment creates a ReplicaSet owned by deployment and replicas Pods owned by the
// ReplicaSet, all running, each container with the imageID that imageIDs gives for its image.
func RunDeployment(ctx context.Context, c client.Client, deployment *appsv1.Deployment, replicas int, imageIDs map[string]string) ([]*corev1.Pod, error) {
	replicaSet := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: deployment.Namespace, Name: deployment.Name + "-7d4b9c8f6"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: new(int32(replicas)), Selector: deployment.Spec.Selector, Template: deployment.Spec.Template,
		},
	}
	if err := controllerutil.SetControllerReference(deployment, replicaSet, c.Scheme()); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, replicaSet); client.IgnoreAlreadyExists(err) != nil {
		return nil, fmt.Errorf("creating the ReplicaSet of %s: %w", deployment.Name, err)
	}
	var pods []*corev1.Pod
	for i := range replicas {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: deployment.Namespace, Name: fmt.Sprintf("%s-%d", replicaSet.Name, i),
				Labels: deployment.Spec.Template.Labels,
			},
			Spec: deployment.Spec.Template.Spec,
		}
		if err := controllerutil.SetControllerReference(replicaSet, pod, c.Scheme()); err != nil {
			return nil, err
		}
		if err := RunPod(ctx, c, pod, imageIDs); err != nil {
			return nil, err
		}
		pods = append(pods, pod)
	}
	return pods, nil
}

// RunPod creates pod and sets its status to Running with every container running, each with
// the imageID that imageIDs gives for its image.
func RunPod(ctx context.Context, c client.Client, pod *corev1.Pod, imageIDs map[string]string) error {
	if err := c.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating pod %s: %w", pod.Name, err)
	}
	started := metav1.NewTime(time.Now().Truncate(time.Second))
	pod.Status.Phase = corev1.PodRunning
	pod.Status.StartTime = &started
	pod.Status.ContainerStatuses = nil
	for _, container := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: container.Name, Image: container.Image, ImageID: imageIDs[container.Image], Ready: true, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		})
	}
	if err := c.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("setting the status of pod %s: %w", pod.Name, err)
	}
	return nil
}

// StopPods deletes pods at once, as a kubelet confirms their end.
func StopPods(ctx context.Context, c client.Client, pods ...*corev1.Pod) error {
	for _, pod := range pods {
		if err := c.Delete(ctx, pod, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting pod %s: %w", pod.Name, err)
		}
	}
	return nil
}

// Deployment is a Deployment in namespace whose pods run image in one container named after
// it, selected by the label app=name.
func Deployment(namespace, name, image string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
			},
		},
	}
}
