package namespace

import (
	"context"
	"errors"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

func TestPodSecurityLabelsVigilsNamespaceOnce(t *testing.T) {
	scheme := clientgoscheme.Scheme
	restricted := map[string]string{"enforce": "restricted", "audit": "restricted", "warn": "restricted"}
	labelled := map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/audit": "restricted",
		"pod-security.kubernetes.io/warn": "restricted",
	}
	tests := []struct {
		name        string
		labels      map[string]string
		levels      map[string]string
		want        map[string]string
		wantPatches int
	}{
		{name: "a namespace without labels", levels: restricted, want: labelled, wantPatches: 1},
		{
			name:   "a lower level is raised, other labels kept",
			labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged", "team": "security"},
			levels: restricted, want: map[string]string{
				"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/audit": "restricted",
				"pod-security.kubernetes.io/warn": "restricted", "team": "security",
			},
			wantPatches: 1,
		},
		{name: "labels at their levels are not written again", labels: labelled, levels: restricted, want: labelled},
		{
			name:   "a mode without a level is left to the administrator",
			labels: map[string]string{"pod-security.kubernetes.io/warn": "baseline"},
			levels: map[string]string{"enforce": "restricted", "warn": ""},
			want: map[string]string{
				"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "baseline",
			},
			wantPatches: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			patches := 0
			c := fake.NewClientBuilder().WithScheme(scheme).
				WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vigil-system", Labels: maps.Clone(tc.labels)}}).
				WithInterceptorFuncs(interceptor.Funcs{Patch: func(ctx context.Context, c client.WithWatch, object client.Object, patch client.Patch, options ...client.PatchOption) error {
					patches++
					return c.Patch(ctx, object, patch, options...)
				}}).Build()
			recorder := events.NewFakeRecorder(10)
			podSecurity := &PodSecurity{Client: c, Reader: c, Events: recorder, Namespace: "vigil-system", Levels: tc.levels}
			if err := podSecurity.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			namespace := &corev1.Namespace{}
			if err := c.Get(t.Context(), client.ObjectKey{Name: "vigil-system"}, namespace); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(namespace.Labels, tc.want) {
				t.Errorf("labels %v, want %v", namespace.Labels, tc.want)
			}
			if patches != tc.wantPatches || len(recorder.Events) != tc.wantPatches {
				t.Errorf("%d patches and %d Events, want %d", patches, len(recorder.Events), tc.wantPatches)
			}
		})
	}
}

func TestPodSecurityStopsTheManagerWhenItsNamespaceIsMissing(t *testing.T) {
	scheme := clientgoscheme.Scheme
	c := fake.NewClientBuilder().WithScheme(scheme).Build()
	podSecurity := &PodSecurity{Client: c, Reader: c, Events: events.NewFakeRecorder(10), Namespace: "vigil-system",
		Levels: map[string]string{"enforce": "restricted"}}
	if err := podSecurity.Start(t.Context()); err == nil {
		t.Error("no error")
	}
}

func TestValidatePodSecurityLevel(t *testing.T) {
	for level, valid := range map[string]bool{"": true, "privileged": true, "baseline": true, "restricted": true, "strict": false, "Restricted": false} {
		if err := ValidatePodSecurityLevel(level); (err == nil) != valid {
			t.Errorf("%q: %v", level, err)
		}
	}
}

func TestPodSecurityTriesAgainUnlessItIsForbidden(t *testing.T) {
	scheme := clientgoscheme.Scheme
	namespaces := schema.GroupResource{Resource: "namespaces"}
	tests := []struct {
		name        string
		failures    []error // the errors of the first patches
		wantPatches int
		wantErr     bool
		wantLabel   string
	}{
		{
			name: "a busy API server is asked again", failures: []error{apierrors.NewServerTimeout(namespaces, "patch", 1)},
			wantPatches: 2, wantLabel: "restricted",
		},
		{
			name: "a namespace Vigil may not label stops the manager at once", failures: []error{apierrors.NewForbidden(namespaces, "vigil-system", errors.New("denied"))},
			wantPatches: 1, wantErr: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			patches := 0
			c := fake.NewClientBuilder().WithScheme(scheme).
				WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vigil-system"}}).
				WithInterceptorFuncs(interceptor.Funcs{Patch: func(ctx context.Context, c client.WithWatch, object client.Object, patch client.Patch, options ...client.PatchOption) error {
					patches++
					if patches <= len(tc.failures) {
						return tc.failures[patches-1]
					}
					return c.Patch(ctx, object, patch, options...)
				}}).Build()
			podSecurity := &PodSecurity{Client: c, Reader: c, Events: events.NewFakeRecorder(10), Namespace: "vigil-system",
				Levels: map[string]string{"enforce": "restricted"}}
			err := podSecurity.Start(t.Context())
			if (err != nil) != tc.wantErr || patches != tc.wantPatches {
				t.Errorf("error %v after %d patches; want an error: %t, %d patches", err, patches, tc.wantErr, tc.wantPatches)
			}
			namespace := &corev1.Namespace{}
			if err := c.Get(t.Context(), client.ObjectKey{Name: "vigil-system"}, namespace); err != nil {
				t.Fatal(err)
			}
			if got := namespace.Labels["pod-security.kubernetes.io/enforce"]; got != tc.wantLabel {
				t.Errorf("enforce label %q, want %q", got, tc.wantLabel)
			}
		})
	}
}
