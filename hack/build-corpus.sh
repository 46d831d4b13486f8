#!/usr/bin/env bash
# Builds Vigil's scan corpus: real images made from packages this machine can reach, written as
# OCI layouts under $VIGIL_CACHE_DIR/corpus (by default ~/.cache/vigil/corpus) and never
# committed. The scan engine's corpus parity test and benchmarks read them; they skip, saying
# so, while the corpus is not built.
#
#   debian-minbase  debootstrap --variant=minbase bookworm
#   debian-jdk      the same with Debian's OpenJDK 17 (a large language runtime)
#   node-app        debian-minbase plus /app: a lockfile-pinned npm tree (hack/corpus/node)
#   python-app      debian-minbase with Debian's python3 and python3-* libraries, plus /app
#   java-app        debian-jdk plus /app/app.jar: a fat jar nesting jars that Debian ships
#   go-app          a Go binary built from real modules (hack/corpus/go)
#   synthetic-5000  the synthetic Node.js image of 5,000 packages (test/fixtures/images)
#
# Idempotent: each step leaves a stamp and is skipped once done; delete a folder under the
# corpus to build it again. Needs root (debootstrap), debootstrap, npm and the Debian mirror of
# /etc/apt/sources.list(.d).
#
# Usage: hack/build-corpus.sh [--print-dir]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
corpus="${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/corpus"
if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$corpus"
  exit 0
fi

suite=bookworm
work="$corpus/work"
debs="$work/debs"
mkdir -p "$work" "$debs"

# mirror is the Debian mirror apt uses: the first URI of a deb822 source or a one-line source
# that serves the suite.
mirror() {
  local uri
  uri="$(awk -v suite="$suite" '
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite && uri != "") { print uri; exit } }
  ' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri="$(awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }' /etc/apt/sources.list)"
  fi
  if [[ -z "$uri" ]]; then
    echo "no Debian mirror for $suite in /etc/apt/sources.list or /etc/apt/sources.list.d" >&2
    exit 1
  fi
  echo "$uri"
}

# rootfs NAME [PACKAGES]: a minbase bookworm root filesystem with the given extra packages.
rootfs() {
  local name="$1" include="${2:-}" dir="$work/rootfs/$1"
  if [[ -f "$dir.done" ]]; then
    return
  fi
  command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
  echo "Building the $name root filesystem"
  rm -rf "$dir"
  mkdir -p "$dir"
  debootstrap --variant=minbase --cache-dir="$debs" ${include:+--include="$include"} "$suite" "$dir" "$(mirror)" \
    >"$work/$name.debootstrap.log" 2>&1 || { tail -20 "$work/$name.debootstrap.log" >&2; exit 1; }
  # What a container image leaves out: device nodes, caches, downloaded package lists.
  rm -rf "$dir"/dev/* "$dir"/proc/* "$dir"/sys/* "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/tmp/*
  touch "$dir.done"
}

# node_app: the npm tree that hack/corpus/node/package-lock.json pins, installed without scripts.
node_app() {
  local dir="$work/node-app"
  if [[ -f "$dir.done" ]]; then
    return
  fi
  echo "Installing the npm tree of hack/corpus/node"
  rm -rf "$dir"
  mkdir -p "$dir/app"
  cp hack/corpus/node/package.json hack/corpus/node/package-lock.json hack/corpus/node/server.js "$dir/app/"
  (cd "$dir/app" && npm ci --ignore-scripts --legacy-peer-deps --no-audit --no-fund >"$work/node-app.npm.log" 2>&1) ||
    { tail -20 "$work/node-app.npm.log" >&2; exit 1; }
  touch "$dir.done"
}

# java_app: Debian's jars (from their .deb files), nested in a fat jar by the Go builder.
java_app() {
  local dir="$work/java-libs"
  if [[ -f "$dir.done" ]]; then
    return
  fi
  echo "Downloading the jars Debian ships"
  rm -rf "$dir"
  mkdir -p "$dir/debs" "$dir/root"
  (cd "$dir/debs" && apt-get download $(<"$root/hack/corpus/java/debian-packages") >"$work/java-app.apt.log" 2>&1) ||
    { tail -20 "$work/java-app.apt.log" >&2; exit 1; }
  for deb in "$dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$dir/root"
  done
  touch "$dir.done"
}

# go_app: a Go binary built from the real modules that hack/corpus/go/go.mod pins.
go_app() {
  local dir="$work/go-app"
  if [[ -f "$dir.done" ]]; then
    return
  fi
  echo "Building the Go binary of hack/corpus/go"
  rm -rf "$dir"
  mkdir -p "$dir/src"
  cp hack/corpus/go/go.mod hack/corpus/go/go.sum hack/corpus/go/main.go "$dir/src/"
  (cd "$dir/src" && CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOWORK=off GOFLAGS=-mod=mod \
    go build -trimpath -o "$dir/app" .)
  touch "$dir.done"
}

rootfs debian-minbase
rootfs debian-jdk openjdk-17-jre-headless
rootfs python-app python3,python3-flask,python3-requests,python3-yaml,python3-jinja2,python3-cryptography,python3-cffi-backend,python3-urllib3,python3-lxml,python3-sqlalchemy,python3-pil
node_app
java_app
go_app

echo "Writing the OCI layouts into $corpus"
go run ./test/corpus/build --corpus "$corpus"
echo "The corpus is built in $corpus"
