# Atrium: the two commands that matter are `make run` and `make test`.
SHELL := /usr/bin/env bash
CARGO ?= cargo

.PHONY: help build run test fuzz soak bench bench-controller bench-gateway lint unit crds manifests docs-graph conformance cluster-up cluster-down cluster-binaries kind-up kind-deploy kind-down clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

build: ## build the atrium binary (debug)
	$(CARGO) build --locked

run: build ## run Atrium: on $$KUBECONFIG's cluster if reachable, else on a local control plane
	tools/run.sh

test: ## fmt, clippy, unit and integration tests against a local control plane (in a network namespace), then a short fuzz smoke
	tools/test.sh
	tools/fuzz.sh --smoke

fuzz: ## cargo-fuzz targets for FUZZ_SECONDS each (default 60; needs the nightly toolchain)
	tools/fuzz.sh

conformance: ## the upstream Gateway API conformance suite (GATEWAY-HTTP) on the local control plane; report in target/conformance/
	tools/conformance.sh

soak: ## the long fault variants: endpoint churn under load for ATRIUM_SOAK_SECONDS (default 120)
	tools/test.sh --test churn -- --ignored --nocapture

bench: bench-controller bench-gateway ## all benchmarks (reports in target/bench/)

bench-controller: ## the controller at 100 and 1,000 Microservices vs the control plane's own floor; docs/benchmarks.md
	$(CARGO) build --release --locked --bin atrium --example pingora_floor --example openloop
	ATRIUM_SKIP_LINT=1 ATRIUM_TEST_ATRIUM_BIN=$(CURDIR)/target/release/atrium tools/test.sh --test bench_controller -- --ignored --nocapture --test-threads=1
	python3 tools/bench/splice.py controller target/bench/controller.md docs/benchmarks.md
	python3 tools/bench/splice.py endpoints target/bench/endpoints.md docs/benchmarks.md

bench-gateway: ## the gateway vs the backend alone, nginx, HAProxy, Envoy and bare pingora; docs/benchmarks.md
	tools/bench-gateway.sh

docs-graph: build ## redraw docs/shop-graph.svg (the README's picture of the sample shop)
	./target/debug/atrium graph -f manifests/samples -o svg > docs/shop-graph.svg

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

unit: ## unit tests only (no cluster needed)
	$(CARGO) test --locked --lib --bins

crds: ## regenerate crds/ (and the chart's copies and RBAC rules) from the Rust types
	$(CARGO) run --locked --quiet -- crds --output-dir crds
	cp crds/*.yaml charts/atrium/crds/
	$(CARGO) run --locked --quiet -- rbac --rules-only > charts/atrium/files/controller-rules.yaml
	$(CARGO) run --locked --quiet -- rbac --role gateway --rules-only --without-secrets > charts/atrium/files/gateway-rules.yaml
	$(CARGO) run --locked --quiet -- rbac --role leader-election --rules-only > charts/atrium/files/leader-election-rules.yaml

manifests: ## render the Helm chart into manifests/base/atrium.yaml (a test fails when it drifts)
	"$$(tools/local-cluster/build.sh)/helm" template atrium charts/atrium --namespace atrium-system --include-crds > manifests/base/atrium.yaml

kind-up: ## create the kind cluster (needs kind and a container engine; not available in CI)
	kind create cluster --config tools/kind/cluster.yaml

kind-deploy: ## build and load the image, helm install Atrium, Prometheus and the samples into kind
	tools/kind/deploy.sh

kind-down: ## delete the kind cluster
	kind delete cluster --name atrium

cluster-binaries: ## build (once) and print the directory of the control plane binaries
	tools/local-cluster/build.sh

cluster-up: ## start a local control plane in .cluster/ (KUBECONFIG=.cluster/kubeconfig)
	tools/local-cluster/cluster.sh up

cluster-down: ## stop the local control plane started by cluster-up
	tools/local-cluster/cluster.sh down

clean: cluster-down ## remove build output and local cluster state
	$(CARGO) clean
	rm -rf .cluster
