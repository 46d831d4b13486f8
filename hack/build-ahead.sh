#!/usr/bin/env bash
# Builds ahead of time what the later steps of `make test` build before they start: the real
# node (hack/build-node.sh), the fuzz-instrumented build of the webhook package (`make fuzz`),
# cert-manager's controllers (hack/cert-manager) and the end-to-end stories' test binary.
# `make test` runs it at the lowest priority beside the race-detector, unit and integration
# tests, which run one package at a time and leave a core idle, so that a first run on empty
# caches does not build these only after the tests. Its failures are left to the steps
# themselves, which build the same things again (at once, when they are cached) and say what
# went wrong.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
hack/build-node.sh || status=1
# The instrumentation is the package's, whichever fuzz target runs: one build serves both.
go test -c -fuzz '^FuzzObserve$' -o "$work/fuzz.test" ./webhook/ || status=1
go build -o "$work/cert-manager" ./hack/cert-manager || status=1
go test -tags e2e -c -o "$work/e2e.test" ./test/e2e/node/ || status=1
exit "$status"
