#!/usr/bin/env bash
# Runs inside the network namespace tools/conformance.sh created: the local control plane,
# Atrium's controller (least-privileged) and the pod runner (which runs the suite's echo pods
# and the Gateways' data planes as processes on their pod IPs), then the suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin="$1"; suite="$2"; shift 2
[[ "${1:-}" == "--" ]] && shift

ip link set lo up
ip route add local 198.18.0.0/16 dev lo
if [[ "$(awk -F: 'NR>2 {gsub(/ /,"",$1); print $1}' /proc/self/net/dev)" != "lo" ]]; then
  echo "error: the namespace has interfaces other than lo; refusing to run" >&2
  exit 1
fi

out="$PWD/target/conformance"
mkdir -p "$out"
cluster="$(mktemp -d "${TMPDIR:-/tmp}/atrium-conformance.XXXXXX")"
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  tools/local-cluster/cluster.sh down "$cluster" || true
  echo "control plane and component logs: $cluster/logs" >&2
  exit $rc
}
trap cleanup EXIT INT TERM

echo "==> starting the local control plane in $cluster"
tools/local-cluster/cluster.sh up "$cluster"
export KUBECONFIG="$cluster/kubeconfig"
k() { "$bin/kubectl" "$@"; }
atrium=target/debug/atrium

echo "==> installing Atrium: CRDs, RBAC, the data planes' namespace and ServiceAccount"
k apply --server-side -f crds/ >/dev/null
k wait --for=condition=Established crd --all --timeout=60s >/dev/null
"$atrium" rbac | k apply --server-side -f - >/dev/null
"$atrium" rbac --role gateway | k apply --server-side -f - >/dev/null
k create namespace atrium-system >/dev/null
k -n atrium-system create serviceaccount atrium-gateway >/dev/null
k apply --server-side -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: atrium-controller}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: atrium-controller}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: atrium-controller}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: atrium-gateway}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: atrium-gateway}
subjects: [{kind: ServiceAccount, name: atrium-gateway, namespace: atrium-system}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: atrium}
spec: {controllerName: atrium.dev/gateway-controller}
YAML

echo "==> starting the controller and the pod runner (logs in $cluster/logs)"
KUBECONFIG="$cluster/controller.kubeconfig" "$atrium" controller --metrics-listen 127.0.0.1:18080 \
  --gateway-namespace atrium-system --gateway-service-type ClusterIP \
  > "$cluster/logs/atrium-controller.log" 2>&1 &
pids+=($!)
"$atrium" pod-runner --work-dir "$cluster/pods" > "$cluster/logs/atrium-pod-runner.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 60); do
  k get gatewayclass atrium -o 'jsonpath={.status.conditions[?(@.type=="Accepted")].status}' 2>/dev/null | grep -q True && break
  sleep 1
done

version="$("$atrium" version | head -1 | awk '{print $2}')"
echo "==> the conformance suite (profile GATEWAY-HTTP); output in $out/suite.log"
start=$SECONDS
set +e
"$suite" -test.run TestConformance -test.timeout 90m -test.v \
  -gateway-class atrium -conformance-profiles GATEWAY-HTTP -report-output "$out/report.yaml" \
  -organization atrium -project atrium -url https://github.com/atrium-dev/atrium -version "${version:-dev}" \
  -contact https://github.com/atrium-dev/atrium/issues -cleanup-base-resources=false "$@" \
  > "$out/suite.log" 2>&1
rc=$?
set -e
echo "    the suite took $((SECONDS - start))s (exit $rc)"
if [[ -s "$out/report.yaml" ]]; then
  python3 - "$out/report.yaml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def counts(section):
    m = re.search(section + r":\n.*?statistics:\n\s+Failed: (\d+)\n\s+Passed: (\d+)\n\s+Skipped: (\d+)", text, re.S)
    return (int(m[2]), int(m[1]), int(m[3])) if m else (0, 0, 0)
c, e = counts("core"), counts("extended")
print(f"core: {c[0]} passed, {c[1]} failed, {c[2]} skipped; extended: {e[0]} passed, {e[1]} failed, {e[2]} skipped")
PY
fi
grep -E "^\s+--- (FAIL|PASS|SKIP)" "$out/suite.log" | sed -E 's/ \([0-9.]+s\)//' | sort | uniq -c | sort -rn | head -80 || true
exit $rc
