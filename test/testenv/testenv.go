// Package testenv starts a real control plane for Vigil's integration tests: etcd and
// kube-apiserver built by hack/build-controlplane.sh, run through controller-runtime's envtest,
// with Vigil's CRDs installed and an admin kubeconfig for kubectl.
package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	vigilscheme "github.com/vigil-dev/vigil/pkg/scheme"
)

// Environment is a running control plane.
type Environment struct {
	// Config is an admin client configuration.
	Config *rest.Config
	// Client is an admin client that knows Vigil's types.
	Client client.Client
	// KubeconfigPath is the file of an admin kubeconfig, for kubectl and for processes.
	KubeconfigPath string
	// KubectlPath is the kubectl built for the control plane's version.
	KubectlPath string

	env    *envtest.Environment
	tmpDir string
}

// ModuleRoot is the folder of Vigil's go.mod, found from the working directory upwards.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// AssetsDir is the folder of the control-plane binaries: $KUBEBUILDER_ASSETS, or else the one
// hack/build-controlplane.sh builds for the Kubernetes version go.mod uses.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(filepath.Join(root, "hack", "build-controlplane.sh"), "--print-dir").Output()
	if err != nil {
		return "", fmt.Errorf("asking hack/build-controlplane.sh for the binaries' folder: %w", err)
	}
	return string(bytes.TrimSpace(out)), nil
}

// Start starts etcd and kube-apiserver, installs Vigil's CRDs and waits until they are served.
func Start() (*Environment, error) {
	return StartIn("")
}

// StartIn is Start with etcd's data and kube-apiserver's certificates in dir (else in temporary
// folders of their own).
func StartIn(dir string) (*Environment, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	for _, binary := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, binary)); err != nil {
			return nil, fmt.Errorf("the control plane is not built (%w): run 'make controlplane'", err)
		}
	}
	scheme, err := vigilscheme.New()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(root, "charts", "vigil", "crds")},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	if dir != "" {
		env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(dir, "etcd")}
		env.ControlPlane.APIServer = &envtest.APIServer{CertDir: filepath.Join(dir, "apiserver")}
		for _, sub := range []string{"etcd", "apiserver"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				return nil, fmt.Errorf("creating the control plane's folders: %w", err)
			}
		}
	}
	config, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	e := &Environment{Config: config, env: env, KubectlPath: filepath.Join(assets, "kubectl")}
	if err := e.init(scheme); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Environment) init(scheme *runtime.Scheme) error {
	var err error
	if e.Client, err = client.New(e.Config, client.Options{Scheme: scheme}); err != nil {
		return fmt.Errorf("creating the test client: %w", err)
	}
	if e.tmpDir, err = os.MkdirTemp("", "vigil-testenv-"); err != nil {
		return fmt.Errorf("creating the test folder: %w", err)
	}
	admin, err := e.env.AddUser(envtest.User{Name: "vigil-test-admin", Groups: []string{"system:masters"}}, e.Config)
	if err != nil {
		return fmt.Errorf("adding the admin user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	e.KubeconfigPath = filepath.Join(e.tmpDir, "kubeconfig")
	if err := os.WriteFile(e.KubeconfigPath, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("writing the admin kubeconfig: %w", err)
	}
	return nil
}

// Kubectl runs kubectl with the admin kubeconfig and returns its standard output; the error
// carries its standard error.
func (e *Environment) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.KubectlPath, append([]string{"--kubeconfig", e.KubeconfigPath}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %v: %w: %s", args, err, stderr.String())
	}
	return stdout.String(), nil
}

// Stop stops the control plane and removes its files.
func (e *Environment) Stop() error {
	err := e.env.Stop()
	if e.tmpDir != "" {
		err = errors.Join(err, os.RemoveAll(e.tmpDir))
	}
	return err
}

// InstallCRDs installs the CRDs of the YAML files in dir and waits until they are served.
func InstallCRDs(e *Environment, dir string) error {
	_, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{Paths: []string{dir}, ErrorIfPathMissing: true})
	if err != nil {
		return fmt.Errorf("installing the CRDs of %s: %w", dir, err)
	}
	return nil
}

// CertManagerCRDDir is the folder of cert-manager's CRDs in the cert-manager module that go.mod
// requires.
func CertManagerCRDDir() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding the cert-manager module: %w", err)
	}
	return filepath.Join(string(bytes.TrimSpace(out)), "deploy", "crds"), nil
}
