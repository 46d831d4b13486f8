#!/usr/bin/env bash
# Builds the grype CLI from the grype module version that go.mod uses, into bin/grype (kept in
# $VIGIL_CACHE_DIR, by default ~/.cache/vigil, and linked from bin/). Vigil's parity test runs it
# on the same images and database as `vigil scan` and compares the findings.
#
# Idempotent: a grype already built for that version is never rebuilt.
#
# Usage: hack/build-grype.sh [--print-path]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

grype_version="$(go list -m -f '{{.Version}}' github.com/anchore/grype)"
cache="${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/grype/$grype_version"
link="$root/bin/grype"

if [[ "${1:-}" == "--print-path" ]]; then
  echo "$link"
  exit 0
fi

mkdir -p "$cache" "$root/bin"
if [[ ! -x "$cache/grype" ]]; then
  echo "Building grype $grype_version into $cache (a cold build takes a few minutes)"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    cat >go.mod <<MOD
module vigil.dev/grype

go $(go env GOVERSION | sed 's/^go//')

require github.com/anchore/grype $grype_version
MOD
    GOFLAGS=-mod=mod go get "github.com/anchore/grype/cmd/grype@$grype_version"
    CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X main.version=$grype_version" -o "$cache/grype.tmp" github.com/anchore/grype/cmd/grype
  )
  mv "$cache/grype.tmp" "$cache/grype"
fi
ln -sfn "$cache/grype" "$link"
echo "grype $grype_version is built in bin/grype"
