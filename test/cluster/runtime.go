package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/bcrypt"
)

// pauseRepository is the sandbox image's name in the cluster's registry.
const pauseRepository = "vigil/pause:e2e"

// publicRegistry is the component name of the cluster's registry that needs no credentials.
const publicRegistry = "registry"

const containerdConfigTemplate = `version = 3
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins.'io.containerd.internal.v1.opt']
  path = %[5]q

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[6]q
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %[7]q

[plugins.'io.containerd.cri.v1.runtime']
  # Root here may lack CAP_SYS_RESOURCE: runc cannot lower a sandbox's oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[8]q]
    conf_dir = %[9]q
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[10]q
        SystemdCgroup = false
`

// The CNI network: a bridge whose gateway is the node, host-local addresses, no masquerading
// (nothing leaves the machine).
const cniConfigTemplate = `{
  "cniVersion": "1.0.0",
  "name": "vigil",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`

// The registries' configuration: distribution's registry on the node's address, plain HTTP,
// storage in the cluster's folder, optionally behind htpasswd authentication. The access log
// (in the registry's log file) tells which pulls reached it.
const registryConfigTemplate = `version: 0.1
log:
  level: warn
  accesslog: {disabled: false}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: true}
http:
  addr: %s
%s`

const hostsTemplate = `server = "http://%[1]s"

[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`

func (c *Cluster) startRegistries(ctx context.Context) error {
	c.log("Starting the registries on %s and %s", c.Registry, c.PrivateRegistry)
	hash, err := bcrypt.GenerateFromPassword([]byte(c.PrivatePassword), bcrypt.MinCost)
	if err != nil {
		return fmt.Errorf("hashing the private registry's password: %w", err)
	}
	htpasswd := c.path("private-registry.htpasswd")
	if err := os.WriteFile(htpasswd, []byte(c.PrivateUser+":"+string(hash)+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the private registry's users: %w", err)
	}
	for _, registry := range []struct {
		name, addr, storage, auth string
	}{
		{publicRegistry, c.Registry, c.path("registry"), ""},
		{"private-registry", c.PrivateRegistry, c.path("private-registry"),
			fmt.Sprintf("auth:\n  htpasswd:\n    realm: vigil\n    path: %q\n", htpasswd)},
	} {
		config := c.path(registry.name + ".yaml")
		if err := os.WriteFile(config, []byte(fmt.Sprintf(registryConfigTemplate, registry.storage, registry.addr, registry.auth)), 0o600); err != nil {
			return fmt.Errorf("writing the configuration of %s: %w", registry.name, err)
		}
		p, err := c.spawn(registry.name, c.bin("registry"), []string{"serve", config}, "OTEL_TRACES_EXPORTER=none")
		if err != nil {
			return err
		}
		url := "http://" + registry.addr + "/v2/"
		if err := c.waitFor(ctx, registry.name, p, func(ctx context.Context) (bool, error) {
			return httpReady(ctx, url), nil
		}); err != nil {
			return err
		}
		hostDir := c.path("containerd", "certs.d", registry.addr)
		if err := os.MkdirAll(hostDir, 0o700); err != nil {
			return fmt.Errorf("creating containerd's registry configuration: %w", err)
		}
		if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(fmt.Sprintf(hostsTemplate, registry.addr)), 0o600); err != nil {
			return fmt.Errorf("writing containerd's registry configuration: %w", err)
		}
	}
	return nil
}

func (c *Cluster) startContainerd(ctx context.Context) error {
	c.log("Starting containerd with runc")
	socket := c.path("containerd", "containerd.sock")
	config := fmt.Sprintf(containerdConfigTemplate,
		c.path("containerd", "root"), c.path("containerd", "state"), socket, socket+".ttrpc",
		c.path("containerd", "opt"), c.Registry+"/"+pauseRepository, c.path("containerd", "certs.d"),
		cniPluginsDir, c.path("cni"), c.bin("runc"))
	configPath := c.path("containerd", "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return fmt.Errorf("writing containerd's configuration: %w", err)
	}
	cni := fmt.Sprintf(cniConfigTemplate, bridgeName, PodCIDR, c.path("cni-ipam"))
	if err := os.WriteFile(c.path("cni", "10-vigil.conflist"), []byte(cni), 0o600); err != nil {
		return fmt.Errorf("writing the CNI configuration: %w", err)
	}
	p, err := c.spawn("containerd", c.bin("containerd"), []string{"--config", configPath, "--log-level", "warn"},
		"PATH="+c.BinDir+":"+os.Getenv("PATH"))
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "containerd", p, func(context.Context) (bool, error) {
		conn, err := net.Dial("unix", socket)
		if err != nil {
			return false, nil
		}
		_ = conn.Close()
		return true, nil
	})
}
