#!/usr/bin/env bash
# Measures the mutation score of Vigil's core packages with gremlins (a Go tool dependency, run
# as `go tool gremlins`): each package's unit tests (-short, through GOFLAGS, since gremlins has no
# flag for it) run once per mutant of that package's code, one package after another, on one
# worker and one build job (-p=1) at low priority so that the run shares a small machine politely.
#
# Usage: hack/mutation.sh [package dir ...]   (default: every core package, smallest first)
# Results: $MUTATION_OUT (default bin/mutation/) gets <package>.json (gremlins' machine-readable
# report: every mutant with its file, line and status) and <package>.log (its text report).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${MUTATION_OUT:-$root/bin/mutation}"
# Each mutant's test run may take this many times the coverage run (gremlins' default, 3) before
# it counts as timed out. Mutants that make a test wait for ever (a Gate that never frees a slot)
# each cost the whole timeout, so it is not raised for a busy machine.
coefficient="${MUTATION_TIMEOUT_COEFFICIENT:-3}"

packages=("$@")
if [[ ${#packages[@]} -eq 0 ]]; then
  packages=(
    reconciler/dbupdate
    reconciler/podimages
    reconciler/namespace
    reconciler/retention
    webhook
    pkg/vulndb
    pkg/match
    reconciler/findings
    pkg/executor
    reconciler/imagescan
    pkg/sbom
  )
fi

mkdir -p "$out"
cd "$root"
for pkg in "${packages[@]}"; do
  name="${pkg//\//-}"
  echo "Mutation testing ./$pkg (report in $out/$name.log)"
  GOFLAGS="${GOFLAGS:-} -short -p=1" nice -n 10 go tool gremlins unleash "./$pkg" \
    --workers 1 --timeout-coefficient "$coefficient" \
    --output "$out/$name.json" 2>&1 | tee "$out/$name.log"
done
