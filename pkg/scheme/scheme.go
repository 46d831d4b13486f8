// Package scheme builds the runtime.Scheme of every type Vigil reads or writes: Kubernetes'
// built-in types and Vigil's own.
package scheme

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// New returns a new scheme with Kubernetes' built-in types and Vigil's.
func New() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("registering Kubernetes types: %w", err)
	}
	if err := vigilv1alpha1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("registering Vigil types: %w", err)
	}
	return scheme, nil
}
