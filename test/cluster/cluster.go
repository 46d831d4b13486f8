// Package cluster runs a real single-node Kubernetes on this machine for Vigil's end-to-end
// tests and for `make cluster`, in the spirit of Kubernetes' own hack/local-up-cluster.sh: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd with runc, a kubelet that
// registers one node, kube-proxy in iptables mode and CoreDNS as an add-on, with pod networking
// on a CNI bridge and local volumes behind a default StorageClass. Every binary comes from hack/build-node.sh (built from the Go module proxy) and
// Debian's packages; every image comes from a registry the cluster runs on the node's address,
// to which it pushes the sandbox image it builds itself. No traffic leaves the machine.
//
// The node's address lives on an interface without ports (a bridge) that the cluster creates. Stop removes everything
// the cluster created: processes, containers, mounts, cgroups, interfaces, iptables chains,
// kernel settings and files. A cluster left behind by a killed run is removed by the next Start.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-dev/vigil/test/testenv"
)

// The cluster's addresses: the node's on its dummy interface, the pods' on the bridge, and the
// Services' virtual range. All are private ranges routed nowhere but inside this machine.
const (
	NodeName       = "vigil-node"
	NodeIP         = "10.210.0.2"
	PodCIDR        = "10.211.0.0/24"
	ServiceCIDR    = "10.212.0.0/24"
	DNSServiceIP   = "10.212.0.10"
	nodeInterface  = "vigil-node"
	bridgeName     = "vigil-br0"
	apiServerPort  = 6443
	registryPort   = 5000
	privatePort    = 5001
	kubeletCgroup  = "kubepods"
	cniPluginsDir  = "/usr/lib/cni"
	clusterDomain  = "cluster.local"
	startupTimeout = 3 * time.Minute
)

// DefaultDir is where the cluster keeps its state unless Options.Dir says otherwise. One
// cluster runs on a machine at a time: its node address and interfaces are fixed.
var DefaultDir = filepath.Join(os.TempDir(), "vigil-cluster")

// Options configure Start.
type Options struct {
	// Dir holds the cluster's state; DefaultDir when empty. It is removed by Stop.
	Dir string
	// BinDir holds the binaries hack/build-node.sh links; its --print-dir when empty.
	BinDir string
	// Log receives progress lines; nothing when nil.
	Log func(format string, args ...any)
}

// Cluster is a running cluster.
type Cluster struct {
	// Dir holds the cluster's state.
	Dir string
	// KubeconfigPath is an admin kubeconfig (system:masters).
	KubeconfigPath string
	// Config is the admin client configuration.
	Config *rest.Config
	// Clientset is an admin client.
	Clientset kubernetes.Interface
	// Registry is the host:port of the cluster's registry, from which containerd pulls without
	// authentication, over plain HTTP.
	Registry string
	// PrivateRegistry is the host:port of a registry that requires PrivateUser and
	// PrivatePassword, for images pulled with a pull secret.
	PrivateRegistry string
	// PrivateUser and PrivatePassword are the private registry's credentials.
	PrivateUser, PrivatePassword string
	// BinDir holds the cluster's binaries (kubectl among them).
	BinDir string
	// LogDir holds each component's log; it outlives Stop, for a failed test's diagnosis.
	LogDir string

	log       func(format string, args ...any)
	processes []*process
}

// Start starts a cluster and waits until its node is Ready and CoreDNS serves. When it fails, it
// removes what it created.
func Start(ctx context.Context, options Options) (*Cluster, error) {
	if err := CanRun(); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: options.Dir, BinDir: options.BinDir, log: options.Log,
		Registry:        fmt.Sprintf("%s:%d", NodeIP, registryPort),
		PrivateRegistry: fmt.Sprintf("%s:%d", NodeIP, privatePort),
		PrivateUser:     "vigil-e2e", PrivatePassword: "vigil-e2e-secret"}
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if c.log == nil {
		c.log = func(string, ...any) {}
	}
	if c.BinDir == "" {
		dir, err := defaultBinDir()
		if err != nil {
			return nil, err
		}
		c.BinDir = dir
	}
	for _, binary := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
		"kubectl", "containerd", "containerd-shim-runc-v2", "runc", "coredns", "registry"} {
		if _, err := os.Stat(filepath.Join(c.BinDir, binary)); err != nil {
			return nil, fmt.Errorf("the node is not built (%s is missing): run 'make node'", binary)
		}
	}
	if _, err := os.Stat(filepath.Join(cniPluginsDir, "bridge")); err != nil {
		return nil, fmt.Errorf("the CNI plugins are not installed (%w): run 'make node'", err)
	}
	c.LogDir = c.Dir + "-logs"
	if _, err := os.Stat(c.Dir); err == nil {
		c.log("Removing the cluster a previous run left in %s", c.Dir)
		if err := teardown(c.Dir, c.BinDir); err != nil {
			return nil, fmt.Errorf("removing the cluster a previous run left: %w", err)
		}
	}
	if err := c.start(ctx); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

// CanRun says why this machine cannot run the cluster's containers, or nil when it can: the
// cluster needs root (network interfaces, mounts, iptables) and mounted cgroups.
func CanRun() error {
	if os.Geteuid() != 0 {
		return errors.New("the real cluster cannot run here: it needs root (network interfaces, mounts, iptables, cgroups)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
		return nil
	}
	if controllers, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && bytes.Contains(controllers, []byte("memory")) {
		return nil
	}
	return errors.New("the real cluster cannot run here: no memory cgroup is mounted under /sys/fs/cgroup")
}

func defaultBinDir() (string, error) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(filepath.Join(root, "hack", "build-node.sh"), "--print-dir").Output()
	if err != nil {
		return "", fmt.Errorf("asking hack/build-node.sh for the binaries' folder: %w", err)
	}
	return string(bytes.TrimSpace(out)), nil
}

func (c *Cluster) bin(name string) string {
	return filepath.Join(c.BinDir, name)
}

func (c *Cluster) path(parts ...string) string {
	return filepath.Join(append([]string{c.Dir}, parts...)...)
}

func (c *Cluster) start(ctx context.Context) error {
	for _, dir := range []string{"pids", "pki", "etcd", "kubelet", "pod-logs", "containerd", "cni", "cni-ipam", "registry", "private-registry"} {
		if err := os.MkdirAll(c.path(dir), 0o700); err != nil {
			return fmt.Errorf("creating the cluster's folders: %w", err)
		}
	}
	_ = os.RemoveAll(c.LogDir)
	if err := os.MkdirAll(c.LogDir, 0o700); err != nil {
		return fmt.Errorf("creating the cluster's log folder: %w", err)
	}
	c.log("Preparing the host: node address %s on %s, forwarding, bridge filtering", NodeIP, nodeInterface)
	if err := saveSysctls(c.Dir); err != nil {
		return err
	}
	if err := addNodeInterface(nodeInterface, NodeIP); err != nil {
		return err
	}
	// Pod traffic stays on this machine: nothing from the bridge is forwarded anywhere else.
	if err := run("iptables", "-w", "-N", "VIGIL-CLUSTER"); err != nil {
		return err
	}
	if err := run("iptables", "-w", "-A", "VIGIL-CLUSTER", "-i", bridgeName, "!", "-o", bridgeName, "-j", "DROP"); err != nil {
		return err
	}
	if err := run("iptables", "-w", "-I", "FORWARD", "-j", "VIGIL-CLUSTER"); err != nil {
		return err
	}

	pki, err := newPKI(c.path("pki"))
	if err != nil {
		return err
	}
	if err := c.startControlPlane(ctx, pki); err != nil {
		return err
	}
	if err := c.startRegistries(ctx); err != nil {
		return err
	}
	if err := c.pushSystemImages(ctx); err != nil {
		return err
	}
	if err := c.startNode(ctx, pki); err != nil {
		return err
	}
	if err := c.installCoreDNS(ctx); err != nil {
		return err
	}
	if err := c.installLocalStorage(ctx); err != nil {
		return err
	}
	c.log("Cluster ready: KUBECONFIG=%s", c.KubeconfigPath)
	return nil
}

func (c *Cluster) startControlPlane(ctx context.Context, pki *pki) error {
	server := fmt.Sprintf("https://%s:%d", NodeIP, apiServerPort)
	var err error
	if c.KubeconfigPath, err = pki.kubeconfig("admin", server, "vigil-admin", "system:masters"); err != nil {
		return err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.KubeconfigPath); err != nil {
		return fmt.Errorf("reading the admin kubeconfig: %w", err)
	}
	if c.Clientset, err = kubernetes.NewForConfig(c.Config); err != nil {
		return fmt.Errorf("creating the admin client: %w", err)
	}
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	c.log("Starting etcd and kube-apiserver on %s", server)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	if _, err := c.spawn("etcd", c.bin("etcd"), []string{
		"--name=vigil", "--data-dir=" + c.path("etcd"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--initial-cluster=vigil=http://127.0.0.1:%d", ports[1]),
		"--unsafe-no-fsync", "--log-level=warn",
	}); err != nil {
		return err
	}
	apiCert, apiKey, err := pki.issue("apiserver", "kube-apiserver", nil, NodeIP, "10.212.0.1", "127.0.0.1", "localhost",
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc."+clusterDomain)
	if err != nil {
		return err
	}
	kubeletClientCert, kubeletClientKey, err := pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", []string{"system:masters"})
	if err != nil {
		return err
	}
	saKey, saPub, err := pki.serviceAccountKeys()
	if err != nil {
		return err
	}
	apiserver, err := c.spawn("kube-apiserver", c.bin("kube-apiserver"), []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=" + NodeIP, "--advertise-address=" + NodeIP, fmt.Sprintf("--secure-port=%d", apiServerPort),
		"--tls-cert-file=" + apiCert, "--tls-private-key-file=" + apiKey, "--client-ca-file=" + pki.caPath,
		"--kubelet-client-certificate=" + kubeletClientCert, "--kubelet-client-key=" + kubeletClientKey,
		"--kubelet-certificate-authority=" + pki.caPath, "--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc." + clusterDomain,
		"--service-account-key-file=" + saPub, "--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	})
	if err != nil {
		return err
	}
	return c.waitFor(ctx, "kube-apiserver to be ready", apiserver, func(ctx context.Context) (bool, error) {
		body, err := c.Clientset.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	})
}

func (c *Cluster) startNode(ctx context.Context, pki *pki) error {
	server := fmt.Sprintf("https://%s:%d", NodeIP, apiServerPort)
	if err := c.startContainerd(ctx); err != nil {
		return err
	}
	c.log("Starting kube-controller-manager, kube-scheduler, kubelet and kube-proxy")
	controllerManagerConfig, err := pki.kubeconfig("controller-manager", server, "system:kube-controller-manager")
	if err != nil {
		return err
	}
	saKey := pki.dir + "/sa.key"
	if _, err := c.spawn("kube-controller-manager", c.bin("kube-controller-manager"), []string{
		"--kubeconfig=" + controllerManagerConfig,
		"--authentication-kubeconfig=" + controllerManagerConfig, "--authorization-kubeconfig=" + controllerManagerConfig,
		"--bind-address=127.0.0.1", "--secure-port=0",
		"--controllers=*",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + saKey, "--root-ca-file=" + pki.caPath,
		"--cluster-signing-cert-file=" + pki.caPath, "--cluster-signing-key-file=" + pki.dir + "/ca.key",
		"--service-cluster-ip-range=" + ServiceCIDR, "--cluster-cidr=" + PodCIDR,
		"--leader-elect=false", "--v=1",
	}); err != nil {
		return err
	}
	schedulerConfig, err := pki.kubeconfig("scheduler", server, "system:kube-scheduler")
	if err != nil {
		return err
	}
	if _, err := c.spawn("kube-scheduler", c.bin("kube-scheduler"), []string{
		"--kubeconfig=" + schedulerConfig,
		"--authentication-kubeconfig=" + schedulerConfig, "--authorization-kubeconfig=" + schedulerConfig,
		"--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false", "--v=1",
	}); err != nil {
		return err
	}

	kubeletConfig, err := pki.kubeconfig("kubelet", server, "system:node:"+NodeName, "system:nodes")
	if err != nil {
		return err
	}
	kubeletCert, kubeletKey, err := pki.issue("kubelet-serving", "system:node:"+NodeName, []string{"system:nodes"}, NodeIP, NodeName)
	if err != nil {
		return err
	}
	configPath := c.path("kubelet", "config.yaml")
	if err := os.WriteFile(configPath, []byte(fmt.Sprintf(kubeletConfigTemplate, NodeIP, pki.caPath, kubeletCert, kubeletKey,
		c.path("containerd", "containerd.sock"), DNSServiceIP, clusterDomain, c.path("pod-logs"))), 0o600); err != nil {
		return fmt.Errorf("writing the kubelet's configuration: %w", err)
	}
	kubelet, err := c.spawn("kubelet", c.bin("kubelet"), []string{
		"--config=" + configPath, "--kubeconfig=" + kubeletConfig,
		"--hostname-override=" + NodeName, "--node-ip=" + NodeIP,
		"--root-dir=" + c.path("kubelet"), "--cert-dir=" + c.path("kubelet", "pki"),
		"--v=1",
	})
	if err != nil {
		return err
	}

	proxyConfig, err := pki.kubeconfig("kube-proxy", server, "system:kube-proxy")
	if err != nil {
		return err
	}
	proxyConfigPath := c.path("kube-proxy.yaml")
	if err := os.WriteFile(proxyConfigPath, []byte(fmt.Sprintf(kubeProxyConfigTemplate, proxyConfig, NodeName, PodCIDR, NodeIP)), 0o600); err != nil {
		return fmt.Errorf("writing kube-proxy's configuration: %w", err)
	}
	if _, err := c.spawn("kube-proxy", c.bin("kube-proxy"), []string{"--config=" + proxyConfigPath, "--v=1"}); err != nil {
		return err
	}
	return c.waitFor(ctx, "the node to be Ready", kubelet, func(ctx context.Context) (bool, error) {
		node, err := c.Clientset.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, condition := range node.Status.Conditions {
			if condition.Type == corev1.NodeReady {
				return condition.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	})
}

const kubeletConfigTemplate = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
tlsCertFile: %s
tlsPrivateKeyFile: %s
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDNS: [%s]
clusterDomain: %s
resolvConf: ""
podLogsDir: %s
hairpinMode: hairpin-veth
serializeImagePulls: false
# The sandbox image is never removed, nor any other: the images come from the cluster's registry.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%%", "imagefs.available": "1%%", "nodefs.inodesFree": "1%%"}
rotateCertificates: false
serverTLSBootstrap: false
`

const kubeProxyConfigTemplate = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %s}
hostnameOverride: %s
mode: iptables
clusterCIDR: %s
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: [%s/32]
iptables:
  localhostNodePorts: false
  # Pods reach Services on the same bridge: their replies come back through the node.
  masqueradeAll: true
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`

// waitFor polls condition until it holds, failing at once when the component exits and after
// startupTimeout.
func (c *Cluster) waitFor(ctx context.Context, what string, component *process, condition wait.ConditionWithContextFunc) error {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if component != nil {
			if err := component.exited(); err != nil {
				return false, fmt.Errorf("%w (see %s)", err, c.logPath(component.name))
			}
		}
		return condition(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// Kubectl runs kubectl with the admin kubeconfig and returns its standard output; the error
// carries its standard error.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.bin("kubectl"), append([]string{"--kubeconfig", c.KubeconfigPath}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// Stop stops every component and removes everything the cluster created but its logs.
func (c *Cluster) Stop() error {
	var errs []error
	// Nothing schedules or restarts pods any more; then the kubelet stops and the containers go.
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kubelet"} {
		errs = append(errs, c.stop(name))
	}
	errs = append(errs, killCgroup(kubeletCgroup))
	for _, p := range c.processes {
		errs = append(errs, p.stop(10*time.Second))
	}
	errs = append(errs, teardown(c.Dir, c.BinDir))
	return errors.Join(errs...)
}

func (c *Cluster) stop(name string) error {
	for _, p := range c.processes {
		if p.name == name {
			return p.stop(10 * time.Second)
		}
	}
	return nil
}

// Remove removes what a cluster left in options.Dir (a run that was killed before it stopped):
// its processes, containers, mounts, cgroups, interfaces, iptables chains and files.
func Remove(options Options) error {
	dir, binDir := options.Dir, options.BinDir
	if dir == "" {
		dir = DefaultDir
	}
	if binDir == "" {
		var err error
		if binDir, err = defaultBinDir(); err != nil {
			return err
		}
	}
	return teardown(dir, binDir)
}

// teardown removes what a cluster in dir created, whether its processes still run or not.
func teardown(dir, binDir string) error {
	var errs []error
	errs = append(errs, killCgroup(kubeletCgroup), killRecorded(dir))
	for _, pid := range processesMatching("containerd-shim", dir) {
		errs = append(errs, killAndWait(pid))
	}
	errs = append(errs, killCgroup(kubeletCgroup))
	errs = append(errs, unmountUnder(dir+"/"))
	if _, err := os.Stat(filepath.Join(binDir, "kube-proxy")); err == nil {
		// kube-proxy removes its own rules; what remains goes with the chains below.
		_ = exec.Command(filepath.Join(binDir, "kube-proxy"), "--cleanup", "--v=0").Run()
	}
	errs = append(errs, removeChains())
	errs = append(errs, deleteLinks(bridgeName, nodeInterface))
	errs = append(errs, restoreSysctls(dir))
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// freePorts returns n free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// httpReady reports whether url answers with a status below 500.
func httpReady(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode < 500
}

// ensureNamespaceServiceAccount waits until the namespace's default service account exists.
func (c *Cluster) ensureNamespaceServiceAccount(ctx context.Context, namespace string) error {
	return c.waitFor(ctx, "the default service account of "+namespace, nil, func(ctx context.Context) (bool, error) {
		_, err := c.Clientset.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, nil
	})
}
