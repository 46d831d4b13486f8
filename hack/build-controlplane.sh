#!/usr/bin/env bash
# Builds the control-plane binaries that Vigil's tests and demo run (etcd, kube-apiserver and
# kubectl) from the Go module proxy into bin/k8s/<version>/, the folder that envtest reads through
# KUBEBUILDER_ASSETS. No download site is needed: each binary is compiled from its published Go
# module, pinned to the Kubernetes release that matches the k8s.io/client-go version in go.mod, and
# etcd to the version that Kubernetes release itself requires.
#
# The binaries are kept in a cache outside the checkout ($VIGIL_CACHE_DIR, by default
# ~/.cache/vigil), which bin/k8s/<version> links to, so that every clone on the machine shares
# them. The script is idempotent: a binary already built for that version is never rebuilt.
#
# Usage: hack/build-controlplane.sh [--print-dir]
#   --print-dir  print the folder the binaries are (or would be) in, and build nothing
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

client_go_version="$(go list -m -f '{{.Version}}' k8s.io/client-go)"
# k8s.io/client-go v0.X.Y is released together with Kubernetes v1.X.Y.
kube_version="v1.${client_go_version#v0.}"
kube_minor="$(cut -d. -f2 <<<"$kube_version")"
cache="${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/k8s/$kube_version"
out="$root/bin/k8s/$kube_version"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache" "$(dirname "$out")"
[[ -L "$out" ]] || ln -s "$cache" "$out"

missing=()
for binary in etcd kube-apiserver kubectl; do
  [[ -x "$cache/$binary" ]] || missing+=("$binary")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "Control plane $kube_version is built in ${out#"$root"/}"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "Building ${missing[*]} for Kubernetes $kube_version into $cache (a cold build takes about 15 minutes)"
kube_mod="$(go mod download -json "k8s.io/kubernetes@$kube_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$kube_mod")"

# wrapper_module DIR REQUIRE... writes a throwaway module that requires the given modules, with
# every Kubernetes staging module replaced by its published v0.X.Y version, as in the release.
wrapper_module() {
  local dir="$1"
  shift
  mkdir -p "$dir"
  {
    echo "module vigil.dev/controlplane"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//')"
    echo
    for requirement in "$@"; do
      echo "require $requirement"
    done
    echo
    sed -n 's|^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*$|replace \1 => \1 '"$client_go_version"'|p' "$kube_mod"
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

build_kubernetes_binary() {
  local binary="$1"
  local dir="$work/kubernetes"
  [[ -f "$dir/go.mod" ]] || wrapper_module "$dir" "k8s.io/kubernetes $kube_version"
  (
    cd "$dir"
    GOFLAGS=-mod=mod go get "k8s.io/kubernetes/cmd/$binary@$kube_version"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$(ldflags_for_kubernetes)" \
      -o "$cache/$binary.tmp" "k8s.io/kubernetes/cmd/$binary"
  )
  mv "$cache/$binary.tmp" "$cache/$binary"
}

build_etcd() {
  local dir="$work/etcd"
  wrapper_module "$dir" "go.etcd.io/etcd/server/v3 $etcd_version"
  (
    cd "$dir"
    GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$etcd_version"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$cache/etcd.tmp" go.etcd.io/etcd/server/v3
  )
  mv "$cache/etcd.tmp" "$cache/etcd"
}

for binary in "${missing[@]}"; do
  start=$SECONDS
  case "$binary" in
    etcd) build_etcd ;;
    *) build_kubernetes_binary "$binary" ;;
  esac
  echo "Built $binary in $((SECONDS - start))s"
done
"$cache/kube-apiserver" --version
"$cache/etcd" --version | sed -n 1p # sed reads it all: head would end etcd with SIGPIPE under pipefail
