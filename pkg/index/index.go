// Package index registers the field indexes that Vigil's reconcilers query in the manager's
// cache, once, under names that say what they index.
package index

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
	"github.com/vigil-dev/vigil/pkg/digest"
)

// Field names of the indexes.
const (
	// ImageScanPhase indexes digest ImageScans by phase, "Pending" for one that has none yet;
	// ImageScans of references not resolved yet are indexed as Unresolved.
	ImageScanPhase = "vigil.dev/phase"
	// PodRunningDigest indexes Pods by the image digests of their running containers.
	PodRunningDigest = "vigil.dev/running-digest"
)

// Unresolved is the ImageScanPhase value of an ImageScan whose reference has no digest yet.
const Unresolved = "Unresolved"

// FieldIndexer is the part of a manager's cache that registers indexes.
type FieldIndexer interface {
	IndexField(ctx context.Context, obj client.Object, field string, extractValue client.IndexerFunc) error
}

// Setup registers every index.
func Setup(ctx context.Context, indexer FieldIndexer) error {
	if err := indexer.IndexField(ctx, &vigilv1alpha1.ImageScan{}, ImageScanPhase, func(o client.Object) []string {
		return []string{PhaseOf(o.(*vigilv1alpha1.ImageScan))}
	}); err != nil {
		return fmt.Errorf("indexing ImageScans by phase: %w", err)
	}
	if err := indexer.IndexField(ctx, &corev1.Pod{}, PodRunningDigest, func(o client.Object) []string {
		return RunningDigests(o.(*corev1.Pod))
	}); err != nil {
		return fmt.Errorf("indexing Pods by running image digest: %w", err)
	}
	return nil
}

// PhaseOf is the ImageScanPhase value of scan.
func PhaseOf(scan *vigilv1alpha1.ImageScan) string {
	switch {
	case scan.Spec.Digest == "":
		return Unresolved
	case scan.Status.Phase == "":
		return string(vigilv1alpha1.ImageScanPending)
	default:
		return string(scan.Status.Phase)
	}
}

// RunningDigests are the image digests of the running containers of pod, each once.
func RunningDigests(pod *corev1.Pod) []string {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	var digests []string
	for _, statuses := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses} {
		for _, status := range statuses {
			d := digest.FromImageID(status.ImageID)
			if status.State.Running == nil || d == "" || contains(digests, d) {
				continue
			}
			digests = append(digests, d)
		}
	}
	return digests
}

func contains(list []string, value string) bool {
	for _, v := range list {
		if v == value {
			return true
		}
	}
	return false
}

// Runs tells whether a running container of some pod in reader's cache uses digest.
func Runs(ctx context.Context, reader client.Reader, digest string) (bool, error) {
	pods, err := PodsRunning(ctx, reader, digest)
	return len(pods) > 0, err
}

// PodsRunning lists the pods in reader's cache with a running container that uses digest. The
// pods are the cache's own: read them, never change them.
func PodsRunning(ctx context.Context, reader client.Reader, digest string) ([]corev1.Pod, error) {
	pods := &corev1.PodList{}
	if err := reader.List(ctx, pods, client.MatchingFields{PodRunningDigest: digest}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing the pods that run %s: %w", digest, err)
	}
	return pods.Items, nil
}
