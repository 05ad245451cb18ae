#!/usr/bin/env bash
# `make conformance`: the upstream Gateway API conformance suite (sigs.k8s.io/gateway-api
# conformance module, tools/conformance/go.mod) against Atrium on the local control plane,
# inside a network namespace this script creates, as `make test` does.
#
#   tools/conformance.sh [-- extra suite flags, e.g. -run-test=HTTPRouteSimpleSameNamespace]
#
# Writes the upstream ConformanceReport to target/conformance/report.yaml, the suite's output to
# target/conformance/suite.log, and prints `core: P passed, F failed, S skipped; extended: ...`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source tools/local-cluster/versions.env
step() { echo; echo "==> $*"; }

step "building atrium"
cargo build --locked
step "control plane binaries"
bin="$(tools/local-cluster/build.sh)"
cache="${ATRIUM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atrium}"
suite_dir="$cache/bin/gateway-api-conformance-$GATEWAY_API_VERSION"
if [[ ! -x "$suite_dir/conformance.test" ]]; then
  step "building the conformance suite $GATEWAY_API_VERSION (first time: ~4 min on 2 cores)"
  mkdir -p "$suite_dir"
  (cd tools/conformance && GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    go test -c -o "$suite_dir/conformance.test.tmp" . && mv "$suite_dir/conformance.test.tmp" "$suite_dir/conformance.test")
fi
if [[ $(id -u) -eq 0 ]]; then ns=(unshare --net); else ns=(unshare --map-root-user --net); fi
step "entering a fresh network namespace"
exec "${ns[@]}" -- tools/conformance-netns.sh "$bin" "$suite_dir/conformance.test" "$@"
