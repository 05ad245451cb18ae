#!/usr/bin/env bash
# `make test`: lint, build, then run every test (unit and integration) inside a network
# namespace this script creates, against a local control plane started once for the run.
#
# Network safety: the namespace has only loopback plus a local route for the pod range
# 198.18.0.0/16, so no test traffic can leave the machine. If the namespace cannot be made,
# the run fails; it never falls back to the host network.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { echo; echo "==> $*"; }

# ATRIUM_SKIP_LINT=1 (the benchmarks): no fmt and clippy, only build and run.
if [[ "${ATRIUM_SKIP_LINT:-}" != 1 ]]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy -- -D warnings"
  cargo clippy --all-targets --locked -- -D warnings
fi
step "building tests (fetches crates; the namespace has no network)"
cargo_args=()
for a in "$@"; do [[ "$a" == "--" ]] && break; cargo_args+=("$a"); done
cargo test --locked --no-run "${cargo_args[@]}"
step "control plane binaries"
bin="$(tools/local-cluster/build.sh)"

step "entering a fresh network namespace"
if [[ $(id -u) -eq 0 ]]; then ns=(unshare --net); else ns=(unshare --map-root-user --net); fi
if ! "${ns[@]}" true 2>/dev/null; then
  echo "error: cannot create a network namespace (${ns[*]}); the integration tests need one" >&2
  echo "       so that no test traffic can leave this machine. Run as root or enable user namespaces." >&2
  exit 1
fi
exec "${ns[@]}" -- tools/netns-test.sh "$bin" "$@"
