#!/usr/bin/env bash
# Runs inside the network namespace tools/test.sh created: sets up loopback and the pod
# range, starts the local control plane, runs `cargo test`, and stops everything it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="$1"; shift

ip link set lo up
ip route add local 198.18.0.0/16 dev lo
if [[ "$(ls /proc/self/net/dev >/dev/null && awk -F: 'NR>2 {gsub(/ /,"",$1); print $1}' /proc/self/net/dev)" != "lo" ]]; then
  echo "error: the test network namespace has interfaces other than lo; refusing to run" >&2
  exit 1
fi

cluster="$(mktemp -d "${TMPDIR:-/tmp}/atrium-test.XXXXXX")"
cleanup() {
  local rc=$?
  tools/local-cluster/cluster.sh down "$cluster" || true
  if [[ $rc -ne 0 ]]; then
    echo "tests failed; control plane logs kept in $cluster/logs" >&2
  else
    rm -rf "$cluster"
  fi
  exit $rc
}
trap cleanup EXIT INT TERM

echo "==> starting the local control plane in $cluster"
start=$SECONDS
ATRIUM_SERVICE_NETWORK=1 tools/local-cluster/cluster.sh up "$cluster"
echo "    ready after $((SECONDS - start))s"

export ATRIUM_TEST_KUBECONFIG="$cluster/kubeconfig" ATRIUM_TEST_BIN_DIR="$bin" CARGO_NET_OFFLINE=true
echo "==> cargo test (unit + integration)"
start=$SECONDS
cargo test --locked "$@"
echo "==> tests passed in $((SECONDS - start))s"
