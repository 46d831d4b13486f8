#!/usr/bin/env bash
# Builds what a real single-node Kubernetes needs beside the control plane, from the Go module
# proxy: kubelet, kube-controller-manager, kube-scheduler and kube-proxy for the Kubernetes
# version go.mod uses, containerd v2 (with its runc shim and ctr), runc (cgo, with seccomp),
# CoreDNS and CNCF distribution's registry. The CNI plugins, iptables, conntrack and the seccomp
# headers come from Debian's packages, installed when missing. Nothing else is downloaded: the
# cluster builds its sandbox image itself and serves every image from a registry on loopback.
#
# The binaries are cached outside the checkout ($VIGIL_CACHE_DIR, by default ~/.cache/vigil), next
# to the control plane that hack/build-controlplane.sh builds; bin/node holds a link to every
# binary the cluster runs. The script is idempotent: a binary already built is never rebuilt.
#
# Usage: hack/build-node.sh [--print-dir]
#   --print-dir  print the folder the cluster's binaries are (or would be) linked in; build nothing
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

containerd_version=v2.4.2
runc_version=v1.3.3
# runc's own go.mod replaces selinux with a folder its module zip lacks; require the release.
runc_selinux_version=v1.15.1
coredns_version=v1.15.0
registry_version=v3.1.2

out="$root/bin/node"
if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$out"
  exit 0
fi

client_go_version="$(go list -m -f '{{.Version}}' k8s.io/client-go)"
# k8s.io/client-go v0.X.Y is released together with Kubernetes v1.X.Y.
kube_version="v1.${client_go_version#v0.}"
kube_minor="$(cut -d. -f2 <<<"$kube_version")"
cache_root="${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}"
kube_cache="$cache_root/k8s/$kube_version"
node_cache="$cache_root/node"
mkdir -p "$kube_cache" "$node_cache" "$out"

# Debian's packages: CNI plugins, iptables, conntrack, and libseccomp's headers for runc.
apt_missing=()
[[ -x /usr/lib/cni/bridge ]] || apt_missing+=(containernetworking-plugins)
command -v iptables >/dev/null || apt_missing+=(iptables)
command -v conntrack >/dev/null || apt_missing+=(conntrack)
[[ -f /usr/include/seccomp.h ]] || apt_missing+=(libseccomp-dev)
if [[ ${#apt_missing[@]} -gt 0 ]]; then
  echo "Installing ${apt_missing[*]} from Debian's packages"
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq "${apt_missing[@]}"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# wrapper_module DIR REQUIRE... writes a throwaway module that requires the given modules, with
# every Kubernetes staging module replaced by its published v0.X.Y version, as in the release.
kube_mod=""
wrapper_module() {
  local dir="$1"
  shift
  mkdir -p "$dir"
  {
    echo "module vigil.dev/node"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//')"
    echo
    for requirement in "$@"; do
      echo "require $requirement"
    done
    echo
    if [[ -n "$kube_mod" ]]; then
      sed -n 's|^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*$|replace \1 => \1 '"$client_go_version"'|p' "$kube_mod"
    fi
  } >"$dir/go.mod"
}

ldflags_for_kubernetes() {
  local flags=()
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=(
      "-X $pkg.gitVersion=$kube_version"
      "-X $pkg.gitMajor=1"
      "-X $pkg.gitMinor=$kube_minor"
      "-X $pkg.gitTreeState=clean"
      "-X $pkg.buildDate=1970-01-01T00:00:00Z"
    )
  done
  echo "-s -w ${flags[*]}"
}

# build_kubernetes_binaries BINARY... builds Kubernetes commands in one go build, which compiles
# the packages they share once and links them side by side.
build_kubernetes_binaries() {
  local dir="$work/kubernetes" packages=() binary
  if [[ ! -f "$dir/go.mod" ]]; then
    kube_mod="$(go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    wrapper_module "$dir" "k8s.io/kubernetes $kube_version"
  fi
  for binary in "$@"; do
    packages+=("k8s.io/kubernetes/cmd/$binary")
  done
  mkdir -p "$work/kubernetes-bin"
  (
    cd "$dir"
    GOFLAGS=-mod=mod go get "${packages[@]/%/@$kube_version}"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$(ldflags_for_kubernetes)" \
      -o "$work/kubernetes-bin/" "${packages[@]}"
  )
  for binary in "$@"; do
    mv "$work/kubernetes-bin/$binary" "$kube_cache/$binary"
  done
}

# go_install DIR PACKAGE@VERSION [LDFLAGS] installs a module's command (no replace directives) into DIR.
go_install() {
  local dir="$1" pkg="$2" ldflags="${3:-}"
  mkdir -p "$dir.tmp"
  CGO_ENABLED=0 GOBIN="$dir.tmp" go install -trimpath -ldflags "-s -w $ldflags" "$pkg"
}

build_containerd() {
  local dir="$node_cache/containerd-$containerd_version"
  [[ -x "$dir/containerd" ]] && return 0
  local version_pkg=github.com/containerd/containerd/v2/version
  for cmd in containerd containerd-shim-runc-v2 ctr; do
    go_install "$dir" "github.com/containerd/containerd/v2/cmd/$cmd@$containerd_version" \
      "-X $version_pkg.Version=$containerd_version -X $version_pkg.Package=github.com/containerd/containerd/v2"
  done
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

build_runc() {
  local dir="$node_cache/runc-$runc_version"
  [[ -x "$dir/runc" ]] && return 0
  local mod="$work/runc"
  wrapper_module "$mod" "github.com/opencontainers/runc $runc_version" \
    "github.com/opencontainers/selinux $runc_selinux_version"
  mkdir -p "$dir.tmp"
  (
    cd "$mod"
    GOFLAGS=-mod=mod go get "github.com/opencontainers/runc@$runc_version"
    CGO_ENABLED=1 GOFLAGS=-mod=mod go build -trimpath -tags seccomp \
      -ldflags "-s -w -X main.version=${runc_version#v}" -o "$dir.tmp/runc" github.com/opencontainers/runc
  )
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

# CoreDNS and the registry are built as their projects document for a custom build: a main that
# imports only the plugins (storage drivers) the cluster uses, which leaves out the cloud
# providers' SDKs and tracers that make up most of their full builds.

build_coredns() {
  local dir="$node_cache/coredns-$coredns_version-cluster"
  [[ -x "$dir/coredns" ]] && return 0
  local mod="$work/coredns"
  wrapper_module "$mod" "github.com/coredns/coredns $coredns_version"
  # The cluster's Corefile (test/cluster) and kubeadm's default one, in CoreDNS's directive order.
  cat >"$mod/main.go" <<'GO'
// Command coredns is CoreDNS with the plugins a cluster's DNS add-on uses.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	dnsserver.Directives = []string{
		"reload", "ready", "health", "prometheus", "errors", "log", "loadbalance", "cache",
		"hosts", "kubernetes", "loop", "forward",
	}
}

func main() { coremain.Run() }
GO
  mkdir -p "$dir.tmp"
  (
    cd "$mod"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$dir.tmp/coredns" .
  )
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

build_registry() {
  local dir="$node_cache/registry-$registry_version-cluster"
  [[ -x "$dir/registry" ]] && return 0
  local mod="$work/registry"
  wrapper_module "$mod" "github.com/distribution/distribution/v3 $registry_version"
  cat >"$mod/main.go" <<'GO'
// Command registry is CNCF distribution's registry with filesystem storage and htpasswd
// authentication, the two the cluster's registries use.
package main

import (
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		panic(err)
	}
}
GO
  mkdir -p "$dir.tmp"
  (
    cd "$mod"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$dir.tmp/registry" .
  )
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
}

timed() {
  local start=$SECONDS
  "$@"
  echo "$* finished in $((SECONDS - start))s"
}

# The components that share nothing with Kubernetes' own build come first; the Kubernetes
# binaries last, so that they reuse what hack/build-controlplane.sh compiled for kube-apiserver.
timed build_containerd
timed build_runc
timed build_coredns
timed build_registry
if [[ ! -x "$kube_cache/kube-apiserver" ]]; then
  echo "The control plane is not built yet: run hack/build-controlplane.sh (make controlplane) first" >&2
  exit 1
fi
missing=()
for binary in kubelet kube-controller-manager kube-scheduler kube-proxy; do
  [[ -x "$kube_cache/$binary" ]] || missing+=("$binary")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  timed build_kubernetes_binaries "${missing[@]}"
fi

link() {
  ln -sfn "$1" "$out/$(basename "$1")"
}
for binary in kubelet kube-controller-manager kube-scheduler kube-proxy etcd kube-apiserver kubectl; do
  link "$kube_cache/$binary"
done
for binary in containerd containerd-shim-runc-v2 ctr; do
  link "$node_cache/containerd-$containerd_version/$binary"
done
link "$node_cache/runc-$runc_version/runc"
link "$node_cache/coredns-$coredns_version-cluster/coredns"
link "$node_cache/registry-$registry_version-cluster/registry"
echo "Node $kube_version is built; its binaries are linked in ${out#"$root"/}"
