# Vigil's build, code generation and tests. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

# The control-plane binaries (etcd, kube-apiserver, kubectl) that envtest and the demo run, built
# from the Go module proxy by hack/build-controlplane.sh for the Kubernetes version go.mod uses.
KUBEBUILDER_ASSETS ?= $(shell hack/build-controlplane.sh --print-dir)
export KUBEBUILDER_ASSETS

CONTROLLER_GEN := go tool controller-gen
# Packages one at a time: the integration suites each run a control plane and several managers,
# and two of them at once on a small machine make their timing stories flaky.
GO_TEST_FLAGS ?= -count=1 -p 1 -timeout 60m
FUZZ_TIME ?= 50000x
DEMO_FLAGS ?=

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: demo
demo: controlplane ## Run Vigil locally: a real API server, sample workloads, the vulnerability view (DEMO_FLAGS=--once to exit after it)
	go run ./cmd/demo $(DEMO_FLAGS)

.PHONY: test
test: tools verify-gen vet ## Run every test: unit (also under the race detector), scan engine, integration on a real API server, fuzzing, end to end on a real node
	@# What the fuzz targets and the end-to-end stories build (the instrumented webhook package,
	@# the node, cert-manager) is built meanwhile, at the lowest priority, on the core that the
	@# tests (one package at a time) leave idle: hack/build-ahead.sh.
	mkdir -p bin; setsid nice -n 19 hack/build-ahead.sh > bin/build-ahead.log 2>&1 & ahead=$$!; \
	trap 'kill -- -$$ahead 2>/dev/null || true' EXIT; \
	$(MAKE) --no-print-directory test-race; \
	go test $(GO_TEST_FLAGS) ./...; \
	$(MAKE) --no-print-directory fuzz; \
	wait $$ahead || echo "Building ahead for the end-to-end stories failed (bin/build-ahead.log); make e2e builds again"; \
	$(MAKE) --no-print-directory e2e

.PHONY: fuzz
fuzz: ## Fuzz the admission request decoding and image extraction, FUZZ_TIME (executions, or a duration) each
	go test -run '^$$' -fuzz '^FuzzObserve$$' -fuzztime $(FUZZ_TIME) ./webhook/
	go test -run '^$$' -fuzz '^FuzzExtractImages$$' -fuzztime $(FUZZ_TIME) ./webhook/

.PHONY: test-unit
test-unit: ## Run the unit tests only (no API server)
	go test $(GO_TEST_FLAGS) -short ./...

MUTATION_PACKAGES ?=
.PHONY: mutation
mutation: ## Measure the mutation score of the core packages' unit tests (slow; not part of test), MUTATION_PACKAGES to pick
	hack/mutation.sh $(MUTATION_PACKAGES)

.PHONY: test-race
test-race: ## Run the unit tests (-short) under the race detector
	@# -p 1 runs one test binary at a time and compiles one package at a time: the
	@# race-instrumented packages are compiled first, on every core.
	go build -race ./...
	go test $(GO_TEST_FLAGS) -race -short ./...

.PHONY: bench
bench: tools ## Run the benchmarks that state a memory target; each fails over its target (not part of make test)
	nice -n 10 go test -run '^$$' -bench '^BenchmarkScanCommand$$' -benchtime 1x -timeout 30m ./test/scanengine/
	nice -n 10 go test -run '^$$' -bench '^BenchmarkRuntimeFindings$$' -benchtime 1x -timeout 40m ./test/load/
	nice -n 10 go test -run '^$$' -bench '^BenchmarkDashboardAtScale$$' -benchtime 1x -timeout 40m ./test/view/
	nice -n 10 go test -run '^$$' -bench '^BenchmarkFlood$$' -benchtime 1x -timeout 20m ./test/load/

.PHONY: tools
tools: controlplane grype helm chromium ## Build the tools the tests run (cached after the first time)

.PHONY: controlplane
controlplane: ## Build etcd, kube-apiserver and kubectl into bin/ (once; about 8 minutes cold)
	hack/build-controlplane.sh

.PHONY: helm
helm: ## Build helm into bin/helm, for the chart tests
	hack/build-helm.sh

.PHONY: grype
grype: ## Build the grype CLI of go.mod's grype version into bin/grype, for the parity test
	hack/build-grype.sh

.PHONY: chromium
chromium: ## Install Chromium from Debian's packages into bin/chromium, for the dashboard's browser tests
	hack/install-chromium.sh

.PHONY: corpus
corpus: ## Build the real-image scan corpus into ~/.cache/vigil/corpus (once; needs root, debootstrap, npm)
	hack/build-corpus.sh

.PHONY: bench-corpus
bench-corpus: corpus grype ## Print vigil scan's wall time and peak memory as ratios to the grype CLI's on the corpus
	go test -run '^$$' -bench '^BenchmarkCorpusAgainstGrypeCLI$$' -benchtime 1x -timeout 90m ./test/scanengine/

.PHONY: bench-node
bench-node: corpus tools node ## Time a corpus image's admission to its Vulnerability on the real node (root), against the grype CLI
	go test -tags e2e -count=1 -run '^$$' -bench '^BenchmarkAdmissionToVulnerabilityOnTheNode$$' -benchtime 1x -timeout 60m ./test/e2e/node/

.PHONY: generate
generate: ## Regenerate deepcopy code, CRDs, RBAC and the webhook configuration from the markers
	$(CONTROLLER_GEN) object paths=./pkg/apis/...
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true paths=./pkg/apis/... output:crd:dir=charts/vigil/crds
	$(CONTROLLER_GEN) rbac:roleName=vigil-manager paths=./... output:rbac:dir=charts/vigil/files/rbac
	$(CONTROLLER_GEN) webhook paths=./webhook/... output:webhook:dir=charts/vigil/files/webhook

.PHONY: verify-gen
verify-gen: ## Fail when a generated file is stale
	hack/verify-generated.sh

.PHONY: vet
vet: ## Run go vet and check formatting
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; if [[ -n "$$unformatted" ]]; then echo "gofmt would change: $$unformatted" >&2; exit 1; fi
	@if git grep -n -E '^(<<<<<<<|>>>>>>>) ' -- ':!*.tar*'; then echo "merge conflict markers left in the files above" >&2; exit 1; fi
	go vet ./...

.PHONY: build
build: ## Build the binaries into bin/
	go build -o bin/ ./cmd/...

CHART_VERSION ?= $(shell awk '/^version:/ {print $$2}' charts/vigil/Chart.yaml)
APP_VERSION ?= $(CHART_VERSION)

.PHONY: chart-package
chart-package: helm ## Package the chart into dist/ with CHART_VERSION and APP_VERSION (default: Chart.yaml's version)
	bin/helm lint charts/vigil --strict
	bin/helm package charts/vigil --version $(CHART_VERSION) --app-version $(APP_VERSION) --destination dist

.PHONY: node
node: controlplane ## Build kubelet, controller-manager, scheduler, kube-proxy, containerd, runc, CoreDNS and a registry into bin/node (cached)
	hack/build-node.sh

.PHONY: cluster
cluster: node ## Start a real single-node cluster (root); prints its KUBECONFIG, Ctrl-C removes it
	go run ./hack/cluster

IMAGE_LAYOUT ?= bin/image/vigil
IMAGE_PUSH ?=
.PHONY: image
image: ## Build Vigil's image without a container engine into IMAGE_LAYOUT (an OCI layout); IMAGE_PUSH=registry/repo:tag also pushes it
	go run ./hack/image --oci-layout $(IMAGE_LAYOUT) $(if $(IMAGE_PUSH),--push $(IMAGE_PUSH))

E2E_FLAGS ?=
.PHONY: e2e
e2e: tools node ## Run the end-to-end stories on a real single-node cluster (root; the chart installed with helm)
	go test -tags e2e -count=1 -timeout 80m $(E2E_FLAGS) ./test/e2e/node/
