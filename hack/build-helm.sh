#!/usr/bin/env bash
# Builds helm from the Go module proxy into bin/helm (kept in $VIGIL_CACHE_DIR, by default
# ~/.cache/vigil, and linked from bin/), for the chart's lint, rendering and install tests.
# Idempotent: a helm already built at HELM_VERSION is never rebuilt.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${HELM_VERSION:-v3.22.0}"
cache="${VIGIL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/helm/$version"
mkdir -p "$cache" "$root/bin"
if [[ ! -x "$cache/helm" ]]; then
  echo "Building helm $version into $cache (a cold build takes about 2 minutes)"
  GOBIN="$cache" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
    "helm.sh/helm/v3/cmd/helm@$version"
fi
ln -sfn "$cache/helm" "$root/bin/helm"
echo "helm $version is built in bin/helm"
