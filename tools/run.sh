#!/usr/bin/env bash
# `make run`: Atrium serving the online-shop samples.
#
# If $KUBECONFIG points at a reachable cluster, the controller and the gateway run on this
# machine against that cluster. Otherwise everything runs locally: a network namespace of its
# own (tools/run-local.sh) holds the local control plane (etcd, kube-apiserver, controller
# manager, scheduler, KWOK nodes), the controller, the gateway and the pod runner that makes
# the shop's demo pods real processes; `atrium forward` brings the gateway (8000), its admin
# port (9000), the controller's metrics (8080) and the API server to this machine's loopback.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ns="${ATRIUM_RUN_NAMESPACE:-shop}"
controller_addr="${ATRIUM_RUN_CONTROLLER_ADDR:-127.0.0.1:8080}"
gateway_addr="${ATRIUM_RUN_GATEWAY_ADDR:-127.0.0.1:8000}"
admin_addr="${ATRIUM_RUN_ADMIN_ADDR:-127.0.0.1:9000}"
jaeger_addr="${ATRIUM_RUN_JAEGER_ADDR:-127.0.0.1:16686}"
atrium=target/debug/atrium
pids=()
inner=""

log() { echo "[make run] $*" >&2; }
cleanup() {
  trap - EXIT INT TERM
  log "stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  [[ -n "$inner" ]] && kill -TERM "$inner" 2>/dev/null || true
  for p in "${pids[@]}" $inner; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 0' INT TERM  # Ctrl-C is the normal way to stop; the EXIT trap cleans up

bin="$(tools/local-cluster/build.sh)"
kubectl="$bin/kubectl"

try_it() { # the commands a newcomer can paste
  local token="$1" gw="$2" admin="$3" ctl="$4"
  cat <<MSG

  TOKEN=$token

  curl -s -H "Authorization: Bearer \$TOKEN" http://$gw/api/users/42   # users, path /users/42, x-user-id forwarded
  curl -s -H "Authorization: Bearer \$TOKEN" http://$gw/api/orders     # orders (needs scope orders:read)
  curl -s -H "Authorization: Bearer \$TOKEN" http://$gw/api/orders/7   # orders calls users and products by Service name
  curl -si http://$gw/api/products | head -12                          # open, rate-limited: see RateLimit-* headers
  curl -si http://$gw/api/users/42 | head -5                           # no token: 401

  kubectl get atrium -n $ns                  # Microservices, ServiceConfigs, GatewayRoutes and their status
  kubectl scale microservice orders -n $ns --replicas=4     # watch /registry follow
  kubectl patch serviceconfig shop-settings -n $ns --type=merge -p '{"spec":{"data":{"CURRENCY":"CHF"}}}'
  curl -s http://$admin/routes                # the gateway's route table
  curl -s http://$admin/registry              # every backend endpoint and its state
  curl -s http://$admin/metrics | grep atrium_gateway_     # gateway metrics
  curl -s http://$ctl/metrics | grep atrium_               # controller metrics
MSG
}

local_run() {
  local state="$PWD/.cluster" start=$SECONDS
  rm -rf "$state"; mkdir -p "$state"
  if [[ $(id -u) -eq 0 ]]; then netns=(unshare --net); else netns=(unshare --map-root-user --net); fi
  "${netns[@]}" -- tools/run-local.sh "$bin" "$state" "$ns" & inner=$!
  until [[ -f "$state/ready" ]]; do
    kill -0 "$inner" 2>/dev/null || { log "error: the local run stopped; see $state/logs/"; exit 1; }
    sleep 0.5
  done
  local kubeconfig="$state/cluster/kubeconfig" api
  api="$(sed -n 's#.*server: https://\(127\.0\.0\.1:[0-9]*\).*#\1#p' "$kubeconfig" | head -1)"
  "$atrium" forward --netns "/proc/$inner/ns/net" --port "$gateway_addr=127.0.0.1:8000" \
    --port "$admin_addr=127.0.0.1:9000" --port "$controller_addr=127.0.0.1:8080" --port "$api=$api" \
    --port "$jaeger_addr=127.0.0.1:16686" \
    2>"$state/logs/forward.log" & pids+=($!)
  until curl -fsS "http://$admin_addr/readyz" >/dev/null 2>&1; do
    kill -0 "${pids[-1]}" 2>/dev/null || { log "error: forwarding failed; see $state/logs/forward.log"; exit 1; }
    sleep 0.2
  done
  local token
  token="$("$atrium" token --key-file manifests/samples/shop-jwt-secret.yaml --sub alice \
    --aud shop-api --iss https://auth.shop.local --claim scope="orders:read orders:write")"
  cat <<MSG

Atrium serves the online shop after $((SECONDS - start)) s: three Microservices (users, orders,
products) on KWOK nodes, each pod a real local process; the gateway at http://$gateway_addr.
Logs: $state/logs/. Try:

  export KUBECONFIG=$kubeconfig PATH=$bin:\$PATH
MSG
  try_it "$token" "$gateway_addr" "$admin_addr" "$controller_addr"
  cat <<MSG

Every request is traced (gateway → orders → users, products) into Jaeger, whose query API is at
http://$jaeger_addr (this build has no UI: the API answers JSON):

  curl -s -D- -o /dev/null -H "Authorization: Bearer \$TOKEN" http://$gateway_addr/api/orders/7 | grep -i x-trace-id
  curl -s http://$jaeger_addr/api/traces/TRACE_ID          # that trace: every span, its service and parent
  curl -s "http://$jaeger_addr/api/traces?service=atrium-gateway&limit=5"
  curl -s "http://$jaeger_addr/api/traces?service=atrium-controller&limit=5"   # reconciles and their API calls
MSG
  echo; echo "Press Ctrl-C to stop everything this command started."
  wait "$inner" || true
  log "the local run stopped"
}

if [[ -n "${KUBECONFIG:-}" ]] && "$kubectl" get --raw /readyz --request-timeout=5s >/dev/null 2>&1; then
  log "using the cluster of KUBECONFIG=$KUBECONFIG ($("$kubectl" config current-context))"
else
  [[ -n "${KUBECONFIG:-}" ]] && log "KUBECONFIG=$KUBECONFIG is not reachable; running a local cluster instead"
  local_run
  exit 0
fi

log "installing CRDs"
"$kubectl" apply --server-side --field-manager=atrium -f crds/ >/dev/null
"$kubectl" wait --for=condition=Established --timeout=60s -f crds/ >/dev/null
"$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
log "applying the samples to namespace $ns"
"$kubectl" apply --server-side --field-manager=atrium-samples -n "$ns" -k manifests/samples >/dev/null

"$atrium" controller --metrics-listen "$controller_addr" & pids+=($!)
"$atrium" gateway --grace-period 1 --listen "$gateway_addr" --admin-listen "$admin_addr" & pids+=($!)

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

Press Ctrl-C to stop everything this command started.
MSG
wait -n "${pids[@]}"
log "a component exited"
