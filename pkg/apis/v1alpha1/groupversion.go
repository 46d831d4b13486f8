package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of Vigil's resources.
	GroupVersion = schema.GroupVersion{Group: "vigil.dev", Version: "v1alpha1"}

	// SchemeBuilder registers Vigil's types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds Vigil's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
