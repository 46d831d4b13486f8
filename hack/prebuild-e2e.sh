#!/usr/bin/env bash
# Builds ahead of time what the end-to-end stories build before they start: the real node
# (hack/build-node.sh), cert-manager's controllers (hack/cert-manager) and the stories' test
# binary. `make test` runs it at the lowest priority beside the unit and integration tests,
# which run one package at a time and leave a core idle, so that a first run on empty caches
# does not build the node only after the tests. Its failures are left to `make e2e`, which
# builds the same things again (at once, when they are cached) and says what went wrong.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
hack/build-node.sh || status=1
go build -o "$work/cert-manager" ./hack/cert-manager || status=1
go test -tags e2e -c -o "$work/e2e.test" ./test/e2e/node/ || status=1
exit "$status"
