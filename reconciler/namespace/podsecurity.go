package namespace

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// PodSecurityLabelPrefix starts the Pod Security Admission labels of a namespace: the prefix
// followed by a mode (enforce, audit or warn), whose value is a level.
const PodSecurityLabelPrefix = "pod-security.kubernetes.io/"

// ReasonPodSecurityLabelled is the reason of the Event told when Vigil labels its namespace.
const ReasonPodSecurityLabelled = "PodSecurityLabelled"

// Pod Security modes and levels, as Pod Security Admission names them.
var (
	podSecurityModes  = []string{"enforce", "audit", "warn"}
	podSecurityLevels = []string{"privileged", "baseline", "restricted"}
)

// ValidatePodSecurityLevel returns an error unless level is a Pod Security level or empty.
func ValidatePodSecurityLevel(level string) error {
	if level != "" && !slices.Contains(podSecurityLevels, level) {
		return fmt.Errorf("%q is not a Pod Security level (%s)", level, strings.Join(podSecurityLevels, ", "))
	}
	return nil
}

// PodSecurity labels Vigil's own namespace with Pod Security Admission levels once, when the
// manager starts, so that the API server holds every pod there (the manager's and the scan
// Jobs') to them. `helm install --create-namespace` cannot label the namespace it creates; the
// manager may patch its own namespace only (a Role in it). Labels already at their level are
// left alone; a mode without a level is not touched.
type PodSecurity struct {
	Client client.Client
	// Reader reads the namespace from the API server.
	Reader client.Reader
	Events events.EventRecorder
	// Namespace is Vigil's own.
	Namespace string
	// Levels maps a mode (enforce, audit, warn) to its level; an empty level is not set.
	Levels map[string]string
}

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=patch,namespace=vigil-system

// Start labels the namespace and returns; an error stops the manager, which is restarted and
// tries again.
func (p *PodSecurity) Start(ctx context.Context) error {
	if err := retry.OnError(retry.DefaultBackoff, func(err error) bool { return !apierrors.IsForbidden(err) }, func() error {
		return p.label(ctx)
	}); err != nil {
		return fmt.Errorf("labelling namespace %s for Pod Security Admission: %w", p.Namespace, err)
	}
	return nil
}

// NeedLeaderElection is false: every replica labels the namespace at its start, the same way.
func (p *PodSecurity) NeedLeaderElection() bool { return false }

func (p *PodSecurity) label(ctx context.Context) error {
	logger := log.FromContext(ctx).WithValues("namespace", p.Namespace)
	namespace := &corev1.Namespace{}
	if err := p.Reader.Get(ctx, types.NamespacedName{Name: p.Namespace}, namespace); err != nil {
		return err
	}
	changes := map[string]string{}
	for _, mode := range podSecurityModes {
		level := p.Levels[mode]
		if level != "" && namespace.Labels[PodSecurityLabelPrefix+mode] != level {
			changes[PodSecurityLabelPrefix+mode] = level
		}
	}
	if len(changes) == 0 {
		logger.V(1).Info("The namespace carries its Pod Security labels")
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": changes}})
	if err != nil {
		return err
	}
	if err := p.Client.Patch(ctx, namespace, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return err
	}
	var set []string
	for _, label := range slices.Sorted(maps.Keys(changes)) {
		set = append(set, label+"="+changes[label])
	}
	logger.Info("Labelled the namespace for Pod Security Admission", "labels", set)
	p.Events.Eventf(namespace, nil, corev1.EventTypeNormal, ReasonPodSecurityLabelled, "Label",
		"Vigil set %s", strings.Join(set, ", "))
	return nil
}
