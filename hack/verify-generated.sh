#!/usr/bin/env bash
# Fails when a generated file (deepcopy code, CRDs, RBAC, webhook manifests) is stale: it runs
# `make generate` on a copy of the working tree and compares the generated folders with the tree.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
copy="$(mktemp -d)"
trap 'rm -rf "$copy"' EXIT

git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy"
# The generators write into these folders; everything else in them is copied unchanged.
generated=(pkg/apis charts/vigil/crds charts/vigil/files)
for dir in "${generated[@]}"; do
  [[ -d "$copy/$dir" ]] && find "$copy/$dir" -name 'zz_generated*' -delete
done
rm -rf "$copy/charts/vigil/crds" "$copy/charts/vigil/files/rbac" "$copy/charts/vigil/files/webhook"
make -s -C "$copy" generate KUBEBUILDER_ASSETS=unused >/dev/null

stale=""
for dir in "${generated[@]}"; do
  stale+="$(diff -r -q "$root/$dir" "$copy/$dir" 2>&1 | sed "s|$copy/||; s|$root/||" || true)"
done
if [[ -n "$stale" ]]; then
  echo "Generated files are stale; run 'make generate' and commit the result:" >&2
  echo "$stale" >&2
  exit 1
fi
echo "Generated files are up to date"
