// Package v1alpha1 holds Vigil's API, group vigil.dev version v1alpha1: the ImageScan of each image
// digest and the Vulnerability findings of the containers that run now.
//
// +kubebuilder:object:generate=true
// +groupName=vigil.dev
package v1alpha1
