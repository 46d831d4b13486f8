package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1alpha1 "github.com/vigil-dev/vigil/pkg/apis/v1alpha1"
)

// cluster is how the view commands reach the cluster: kubectl's own flags (--kubeconfig,
// --context, --namespace, --as, ...) and the user's credentials, never Vigil's.
type cluster struct {
	flags *genericclioptions.ConfigFlags
}

// addClusterFlags adds kubectl's connection flags to cmd. Each view command has its own set:
// `vigil scan` passes its flags to vigil-scanner, whose --insecure-skip-tls-verify names
// registries.
func addClusterFlags(cmd *cobra.Command) *cluster {
	c := &cluster{flags: genericclioptions.NewConfigFlags(true)}
	c.flags.AddFlags(cmd.Flags())
	return c
}

// config is the REST configuration of the user's kubeconfig and flags.
func (c *cluster) config() (*rest.Config, error) {
	config, err := c.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	config.UserAgent = "vigil/" + rest.DefaultKubernetesUserAgent()
	return config, nil
}

// client is a client of Vigil's types with the user's credentials.
func (c *cluster) client() (client.Client, error) {
	config, err := c.config()
	if err != nil {
		return nil, err
	}
	return newClient(config)
}

func newClient(config *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := vigilv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(config, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, nil
}

// namespace is the namespace of --namespace, or else of the kubeconfig's context; explicit is
// true when --namespace gave it.
func (c *cluster) namespace() (namespace string, explicit bool, err error) {
	namespace, explicit, err = c.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", false, fmt.Errorf("reading the kubeconfig's namespace: %w", err)
	}
	return namespace, explicit, nil
}

// usePluginName names the command "kubectl vigil" in its help when it runs as kubectl's plugin:
// kubectl runs kubectl-vigil for `kubectl vigil`.
func usePluginName(root *cobra.Command) {
	if strings.HasPrefix(filepath.Base(os.Args[0]), "kubectl-") {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl vigil"}
	}
}
