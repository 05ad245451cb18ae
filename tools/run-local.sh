#!/usr/bin/env bash
# The local half of `make run`, inside the network namespace tools/run.sh created: loopback and
# the pod range 198.18.0.0/16, the local control plane, the CRDs, the samples, then the
# controller, the gateway (cluster mode) and the pod runner (which runs the shop's demo pods as
# local processes on their pod IPs), and Jaeger, which every one of them sends its spans to. Writes $state/ready when everything is Ready; logs go to
# $state/logs/. TERM stops everything it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="$1"; state="$2"; ns="$3"
atrium="$PWD/target/debug/atrium"
kubectl="$bin/kubectl"
logs="$state/logs"; mkdir -p "$logs"
pids=()
log() { echo "[make run] $*" >&2; }

ip link set lo up
ip route add local 198.18.0.0/16 dev lo
if [[ "$(awk -F: 'NR>2 {gsub(/ /,"",$1); print $1}' /proc/self/net/dev)" != "lo" ]]; then
  log "error: the run's network namespace has interfaces other than lo; refusing to run"; exit 1
fi

cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  tools/local-cluster/cluster.sh down "$state/cluster" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

log "starting the local control plane (logs: $state/cluster/logs/)"
ATRIUM_SERVICE_NETWORK=1 tools/local-cluster/cluster.sh up "$state/cluster" 2>"$logs/cluster.log"
export KUBECONFIG="$state/cluster/kubeconfig"

log "installing the CRDs and applying manifests/samples/ to namespace $ns"
"$kubectl" apply --server-side --field-manager=atrium -f crds/ >/dev/null
"$kubectl" wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
"$kubectl" create namespace "$ns" >/dev/null
"$kubectl" apply --server-side --field-manager=atrium-samples -n "$ns" -k manifests/samples >/dev/null

log "starting Jaeger (traces; query API on 127.0.0.1:16686)"
JAEGER_OTLP_HTTP=127.0.0.1:4318 JAEGER_QUERY_HTTP=127.0.0.1:16686 JAEGER_QUERY_GRPC=127.0.0.1:16685 \
  JAEGER_HEALTH=127.0.0.1:13133 "$bin/jaeger" --config tools/local-cluster/jaeger.yaml \
  2>"$logs/jaeger.log" & pids+=($!)
# Every Atrium process exports its spans there; the pod runner's demo processes inherit these
# (each takes its service name from its --name).
export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_BSP_SCHEDULE_DELAY=500

log "starting the controller, the gateway and the pod runner (logs: $logs/)"
"$atrium" controller --metrics-listen 127.0.0.1:8080 2>"$logs/controller.log" & pids+=($!)
"$atrium" gateway --listen 127.0.0.1:8000 --admin-listen 127.0.0.1:9000 --grace-period 1 \
  --access-log-sample-rate 0 2>"$logs/gateway.log" & pids+=($!)
"$atrium" pod-runner --namespace "$ns" --work-dir "$state/pods" --cluster-dns "$(cat "$state/cluster/cluster-dns")" 2>"$logs/pod-runner.log" & pids+=($!)

start=$SECONDS
until curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && curl -fsS http://127.0.0.1:9000/readyz >/dev/null 2>&1 \
    && curl -fsS http://127.0.0.1:13133/status >/dev/null 2>&1; do
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { log "error: a component exited; see $logs/"; exit 1; }; done
  (( SECONDS - start > 60 )) && { log "error: components not ready after 60 s; see $logs/"; exit 1; }
  sleep 0.2
done
for ms in users products orders; do
  log "waiting for Microservice $ms to be Ready"
  "$kubectl" wait -n "$ns" --for=condition=Ready --timeout=180s "microservice/$ms" >/dev/null
done
"$kubectl" wait -n "$ns" --for=condition=Accepted --timeout=60s gatewayroute/shop-api >/dev/null
touch "$state/ready"
wait -n "${pids[@]}"
log "a component exited; see $logs/"
