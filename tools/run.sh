#!/usr/bin/env bash
# `make run`: Atrium on a cluster, with the online-shop samples applied.
#
# If $KUBECONFIG points at a reachable cluster, that cluster is used. Otherwise a local control
# plane (etcd, kube-apiserver, controller manager, scheduler, KWOK nodes) is started on
# 127.0.0.1 in .cluster/. Then: CRDs installed, samples applied to namespace `shop`, controller
# and gateway started on loopback. Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ns="${ATRIUM_RUN_NAMESPACE:-shop}"
controller_addr="${ATRIUM_RUN_CONTROLLER_ADDR:-127.0.0.1:8080}"
gateway_addr="${ATRIUM_RUN_GATEWAY_ADDR:-127.0.0.1:8000}"
admin_addr="${ATRIUM_RUN_ADMIN_ADDR:-127.0.0.1:9000}"
atrium=target/debug/atrium
pids=()
local_cluster=""

log() { echo "[make run] $*" >&2; }
cleanup() {
  trap - EXIT INT TERM
  log "stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ -n "$local_cluster" ]]; then tools/local-cluster/cluster.sh down "$local_cluster"; fi
}
trap cleanup EXIT
trap 'exit 0' INT TERM  # Ctrl-C is the normal way to stop; the EXIT trap cleans up

bin="$(tools/local-cluster/build.sh)"
kubectl="$bin/kubectl"

if [[ -n "${KUBECONFIG:-}" ]] && "$kubectl" get --raw /readyz --request-timeout=5s >/dev/null 2>&1; then
  log "using the cluster of KUBECONFIG=$KUBECONFIG ($("$kubectl" config current-context))"
else
  [[ -n "${KUBECONFIG:-}" ]] && log "KUBECONFIG=$KUBECONFIG is not reachable; starting a local control plane instead"
  local_cluster="$PWD/.cluster"
  tools/local-cluster/cluster.sh up "$local_cluster"
  export KUBECONFIG="$local_cluster/kubeconfig"
fi

log "installing CRDs"
"$kubectl" apply --server-side --field-manager=atrium -f crds/ >/dev/null
"$kubectl" wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
"$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
log "applying the samples to namespace $ns"
"$kubectl" apply --server-side --field-manager=atrium-samples -n "$ns" -k manifests/samples >/dev/null

"$atrium" controller --metrics-listen "$controller_addr" & pids+=($!)
if [[ -n "$local_cluster" ]]; then
  # The local cluster's pods are KWOK fakes whose IPs (198.18.0.0/16) exist only inside a test
  # network namespace: a gateway on this host must never send traffic there, so here it serves
  # the file-mode example routes instead (loopback backends), not the cluster's routes.
  gateway_config="$PWD/.cluster/gateway"
  mkdir -p "$gateway_config"
  "$atrium" gateway --grace-period 1 --listen "$gateway_addr" --admin-listen "$admin_addr" --config-dir "$gateway_config" & pids+=($!)
else
  "$atrium" gateway --grace-period 1 --listen "$gateway_addr" --admin-listen "$admin_addr" & pids+=($!)
fi

wait_ready() {
  local url="$1" start=$SECONDS
  until curl -fsS "$url" >/dev/null 2>&1; do
    if (( SECONDS - start > 60 )); then log "error: $url not ready after 60s"; exit 1; fi
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { log "error: a component exited; see the log above"; exit 1; }; done
    sleep 0.2
  done
}
wait_ready "http://$controller_addr/readyz"
wait_ready "http://$admin_addr/readyz"

cat <<MSG

Atrium is running (KUBECONFIG=$KUBECONFIG).

  export KUBECONFIG=$KUBECONFIG
  $kubectl get atrium -n $ns            # every Microservice, ServiceConfig and GatewayRoute
  $kubectl explain microservice.spec    # the API, documented
  curl -s http://$controller_addr/metrics | grep atrium_   # controller metrics
  curl -s http://$admin_addr/metrics | grep atrium_        # gateway metrics
  curl -s http://$admin_addr/routes                         # the gateway's route table
  # local mode: the gateway reads routes from .cluster/gateway/ (file mode, loopback backends);
  # serving the cluster's pods needs the local pod runner, which is not built yet

Press Ctrl-C to stop everything this command started.
MSG
wait -n "${pids[@]}"
log "a component exited"
