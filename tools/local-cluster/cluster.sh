#!/usr/bin/env bash
# Starts and stops a real local Kubernetes control plane: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and KWOK with fake nodes. Everything binds to
# 127.0.0.1 on free ports; pods get IPs from 198.18.0.0/16 (KWOK's --cidr).
#
#   tools/local-cluster/cluster.sh up   [DIR]   # start, wait until ready, write DIR/kubeconfig
#   tools/local-cluster/cluster.sh down [DIR]   # stop every process `up` started
#   tools/local-cluster/cluster.sh status [DIR]
#   tools/local-cluster/cluster.sh stop-component NAME [DIR]   # SIGKILL one (fault tests)
#   tools/local-cluster/cluster.sh start-component NAME [DIR]  # start it again, same flags
#
# DIR defaults to $ATRIUM_CLUSTER_DIR or ./.cluster. Logs are in DIR/logs/. Nodes:
# $ATRIUM_KWOK_NODES (default 3); node N hands out pod IPs from 198.18.N.0/24, every node's own
# address is 198.18.0.1. Binaries come from build.sh (cached; built once per version).
#
# ATRIUM_SERVICE_NETWORK=1 adds what a node's kube-proxy and the cluster's DNS give a real
# cluster: kube-proxy (nftables mode) makes Service cluster IPs (198.19.0.0/16, a local route)
# lead to ready endpoints, and CoreDNS serves cluster.local on the kube-dns Service's cluster IP
# 198.19.0.10 (itself on 198.18.255.53). Both program and bind only the current network
# namespace, so `up` refuses this unless that namespace has nothing but loopback (the test and
# demo runs create one); one such cluster per namespace.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-}"
dir="${2:-${ATRIUM_CLUSTER_DIR:-$PWD/.cluster}}"
nodes="${ATRIUM_KWOK_NODES:-3}"
pod_cidr="198.18.0.0/16"
service_cidr="198.19.0.0/16"
# kube-apiserver needs an advertise address when the host has no default route (as inside the
# test network namespace) and refuses loopback ones; it only publishes it, nothing is sent there.
advertise_ip="198.18.255.254"
node_ip="198.18.0.1"
dns_service_ip="198.19.0.10"
dns_pod_ip="198.18.255.53"

log() { echo "[local-cluster] $*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local start=$SECONDS
  local pid name
  until "$@" >/dev/null 2>&1; do
    while read -r pid name; do
      if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 5 "$dir/logs/$name.log" >&2 || true
        die "$name exited while waiting for $what; see $dir/logs/$name.log"
      fi
    done < "$dir/pids"
    if (( SECONDS - start > timeout )); then
      die "$what not ready after ${timeout}s; see $dir/logs/"
    fi
    sleep 0.2
  done
}

start() { # start NAME BINARY ARGS...: runs in its own session, logs to DIR/logs/NAME.log
  local name="$1"; shift
  mkdir -p "$dir/cmd"
  printf '%s\0' "$@" > "$dir/cmd/$name"
  setsid "$@" >> "$dir/logs/$name.log" 2>&1 < /dev/null &
  echo "$! $name" >> "$dir/pids"
}

# Fault injection: kill one component (its whole session) and forget its pid.
stop_component() {
  local name="$1" pid n
  [[ -s "$dir/cmd/$name" ]] || die "no component $name in $dir"
  while read -r pid n; do
    [[ "$n" == "$name" ]] || continue
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  done < "$dir/pids"
  awk -v n="$name" '$2 != n' "$dir/pids" > "$dir/pids.tmp" && mv "$dir/pids.tmp" "$dir/pids"
  log "$name stopped"
}

# Starts a stopped component again with the flags it had (same ports, same data) and waits
# until it serves.
start_component() {
  local name="$1" args=()
  [[ -s "$dir/cmd/$name" ]] || die "no component $name in $dir"
  if awk -v n="$name" '$2 == n { found = 1 } END { exit !found }' "$dir/pids"; then
    die "$name is already running"
  fi
  mapfile -d '' -t args < "$dir/cmd/$name"
  local t0=$SECONDS
  start "$name" "${args[@]}"
  local bin; bin="$(cat "$dir/bin-dir")"
  case "$name" in
    kube-apiserver) wait_for kube-apiserver 60 "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz ;;
    etcd) wait_for etcd 30 "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz ;;
  esac
  log "$name started again, serving after $((SECONDS - t0))s"
}

pki() {
  local p="$dir/pki"
  [[ -s "$p/coredns.token" ]] && return 0
  mkdir -p "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=atrium-local-ca" \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$p/apiserver.key" -out "$p/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' > "$p/apiserver.ext"
  openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days 3650 -extfile "$p/apiserver.ext" -out "$p/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  # Static tokens: one for the admin (system:masters), one per control-plane component.
  local admin kcm sched kwok ctl gw proxy dns
  admin="$(openssl rand -hex 24)"; kcm="$(openssl rand -hex 24)"
  sched="$(openssl rand -hex 24)"; kwok="$(openssl rand -hex 24)"; ctl="$(openssl rand -hex 24)"
  gw="$(openssl rand -hex 24)"; proxy="$(openssl rand -hex 24)"; dns="$(openssl rand -hex 24)"
  {
    echo "$admin,admin,admin-uid,\"system:masters\""
    echo "$kcm,system:kube-controller-manager,kcm-uid"
    echo "$sched,system:kube-scheduler,scheduler-uid"
    echo "$kwok,kwok,kwok-uid,\"system:masters\""
    # The Atrium controller as an ordinary user: it gets only the ClusterRole `atrium rbac` prints.
    echo "$ctl,atrium-controller,atrium-controller-uid"
    echo "$gw,atrium-gateway,atrium-gateway-uid"
    # kube-proxy's user, bound to system:node-proxier by the API server's default RBAC.
    echo "$proxy,system:kube-proxy,kube-proxy-uid"
    echo "$dns,system:coredns,coredns-uid"
  } > "$p/tokens.csv"
  echo "$admin" > "$p/admin.token"; echo "$kcm" > "$p/kcm.token"
  echo "$sched" > "$p/scheduler.token"; echo "$kwok" > "$p/kwok.token"; echo "$ctl" > "$p/controller.token"
  echo "$gw" > "$p/gateway.token"; echo "$proxy" > "$p/kube-proxy.token"
  echo "$dns" > "$p/coredns.token"
  chmod 600 "$p"/*.key "$p"/*.token "$p/tokens.csv"
}

kubeconfig() { # kubeconfig FILE USER TOKEN_FILE
  local ca; ca="$(base64 -w0 < "$dir/pki/ca.crt")"
  cat > "$1" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: atrium-local
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $ca
users:
- name: $2
  user:
    token: $(cat "$3")
contexts:
- name: atrium-local
  context: {cluster: atrium-local, user: $2, namespace: default}
current-context: atrium-local
KCFG
  chmod 600 "$1"
}

# only_loopback: true when the current network namespace has no interface but lo.
only_loopback() {
  [[ "$(awk -F: 'NR>2 {gsub(/ /,"",$1); print $1}' /proc/self/net/dev)" == "lo" ]]
}

# tcp_open HOST PORT: true when a TCP connection to HOST:PORT succeeds.
tcp_open() {
  python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' "$1" "$2"
}

# Service networking: kube-proxy and CoreDNS, as on a real cluster's nodes (see the header).
service_network() {
  local bin="$1" k=("$bin/kubectl" --kubeconfig "$dir/kubeconfig")
  # Connections to a cluster IP leave from the node's address (as from a node on a real
  # cluster): without a source hint they would leave from the cluster IP itself, which
  # kube-proxy masquerades as traffic from outside the cluster, to 127.0.0.1, which the kernel
  # then drops as a martian.
  ip route replace local "$service_cidr" dev lo src "$node_ip"
  kubeconfig "$dir/kube-proxy.kubeconfig" system:kube-proxy "$dir/pki/kube-proxy.token"
  kubeconfig "$dir/coredns.kubeconfig" system:coredns "$dir/pki/coredns.token"
  local proxy_health proxy_metrics dns_health dns_ready dns_metrics
  proxy_health="$(free_port)"; proxy_metrics="$(free_port)"
  dns_health="$(free_port)"; dns_ready="$(free_port)"; dns_metrics="$(free_port)"
  cat > "$dir/kube-proxy.yaml" <<CFG
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
hostnameOverride: kwok-node-1
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$proxy_health
metricsBindAddress: 127.0.0.1:$proxy_metrics
clusterCIDR: $pod_cidr
detectLocalMode: ClusterCIDR
nodePortAddresses: [198.18.0.1/32]
# A network namespace's conntrack table size is the host's to set.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
CFG
  start kube-proxy "$bin/kube-proxy" --config="$dir/kube-proxy.yaml" --v=1

  "${k[@]}" apply -f - >/dev/null <<DNS
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: system:coredns}]
---
# No selector: CoreDNS runs as a process of this namespace, not as a pod, so its one endpoint
# is written here (the EndpointSlice controller leaves selector-less Services alone).
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: $dns_service_ip
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-local
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: atrium-local-cluster}
addressType: IPv4
endpoints:
- addresses: [$dns_pod_ip]
  conditions: {ready: true}
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
DNS
  cat > "$dir/Corefile" <<CFG
.:53 {
    bind $dns_pod_ip
    errors
    health 127.0.0.1:$dns_health
    ready 127.0.0.1:$dns_ready
    prometheus 127.0.0.1:$dns_metrics
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $dir/coredns.kubeconfig atrium-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
    loadbalance
}
CFG
  start coredns "$bin/coredns" -conf "$dir/Corefile"
  wait_for kube-proxy 60 curl -fsS "http://127.0.0.1:$proxy_health/healthz"
  wait_for CoreDNS 60 curl -fsS "http://127.0.0.1:$dns_ready/ready"
  # The DNS Service's cluster IP answers once kube-proxy has programmed it.
  wait_for "the kube-dns Service through kube-proxy" 60 tcp_open "$dns_service_ip" 53
  echo "$dns_service_ip" > "$dir/cluster-dns"
  log "service networking ready: kube-proxy (nftables) for $service_cidr, CoreDNS on $dns_service_ip"
}

up() {
  if [[ -s "$dir/pids" ]] && status >/dev/null 2>&1; then
    log "already running; KUBECONFIG=$dir/kubeconfig"; return 0
  fi
  local began=$SECONDS
  if [[ "${ATRIUM_SERVICE_NETWORK:-0}" == 1 ]] && ! only_loopback; then
    die "ATRIUM_SERVICE_NETWORK=1 programs this network namespace's nftables and binds DNS: run it only in a namespace of its own with nothing but lo (as tools/test.sh does)"
  fi
  if [[ "${ATRIUM_SERVICE_NETWORK:-0}" == 1 ]] && ! command -v nft >/dev/null; then
    die "kube-proxy (nftables mode) needs the nft command: apt-get install nftables"
  fi
  local bin; bin="$("$here/build.sh")"
  mkdir -p "$dir/logs"; rm -rf "$dir/etcd"; : > "$dir/pids"
  pki
  local etcd_port etcd_peer api_port_ kcm_port sched_port
  etcd_port="$(free_port)"; etcd_peer="$(free_port)"; api_port_="$(free_port)"
  kcm_port="$(free_port)"; sched_port="$(free_port)"
  api_port="$api_port_"
  local t0=$SECONDS

  start etcd "$bin/etcd" --name=local --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
    --initial-cluster="local=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync=true --log-level=warn
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$etcd_port/health"

  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --secure-port="$api_port" \
    --tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \
    --client-ca-file="$dir/pki/ca.crt" --token-auth-file="$dir/pki/tokens.csv" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$dir/pki/sa.pub" --service-account-signing-key-file="$dir/pki/sa.key" \
    --service-cluster-ip-range="$service_cidr" --allow-privileged=true \
    --advertise-address="$advertise_ip" --endpoint-reconciler-type=none --profiling=false --v=1
  kubeconfig "$dir/kubeconfig" admin "$dir/pki/admin.token"
  kubeconfig "$dir/kcm.kubeconfig" system:kube-controller-manager "$dir/pki/kcm.token"
  kubeconfig "$dir/scheduler.kubeconfig" system:kube-scheduler "$dir/pki/scheduler.token"
  kubeconfig "$dir/kwok.kubeconfig" kwok "$dir/pki/kwok.token"
  kubeconfig "$dir/controller.kubeconfig" atrium-controller "$dir/pki/controller.token"
  kubeconfig "$dir/gateway.kubeconfig" atrium-gateway "$dir/pki/gateway.token"
  local k=("$bin/kubectl" --kubeconfig "$dir/kubeconfig")
  wait_for kube-apiserver 60 "${k[@]}" get --raw /readyz
  log "kube-apiserver ready in $((SECONDS - t0))s on https://127.0.0.1:$api_port"

  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$dir/kcm.kubeconfig" --authentication-kubeconfig="$dir/kcm.kubeconfig" \
    --authorization-kubeconfig="$dir/kcm.kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$kcm_port" \
    --service-account-private-key-file="$dir/pki/sa.key" --root-ca-file="$dir/pki/ca.crt" \
    --use-service-account-credentials=true --cluster-cidr="$pod_cidr" \
    --service-cluster-ip-range="$service_cidr" \
    --authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics --v=1
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$dir/scheduler.kubeconfig" --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig="$dir/scheduler.kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$sched_port" --v=1
  # Upstream's stages with its pod-ready stage replaced by ours (kwok-pod-stages.yaml).
  awk 'BEGIN { RS = "\n---\n"; ORS = "\n---\n" } !/\n  name: pod-ready\n/' "$bin/kwok-stages.yaml" \
    > "$dir/kwok-stages.yaml"
  cat "$here/kwok-pod-stages.yaml" >> "$dir/kwok-stages.yaml"
  start kwok "$bin/kwok" --kubeconfig="$dir/kwok.kubeconfig" --config="$dir/kwok-stages.yaml" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr="$pod_cidr" --node-ip="$node_ip" --node-lease-duration-seconds=40

  local i
  for i in $(seq 1 "$nodes"); do
    "${k[@]}" apply -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64, topology.kubernetes.io/zone: zone-$(( (i - 1) % 3 + 1 ))}
spec: {podCIDR: "198.18.$i.0/24", podCIDRs: ["198.18.$i.0/24"]}
NODE
  done
  wait_for "KWOK nodes" 60 "${k[@]}" wait --for=condition=Ready node --all --timeout=1s
  wait_for "default ServiceAccount" 60 "${k[@]}" -n default get serviceaccount default
  # The Gateway API's standard CRDs, installed first as Gateway API implementations expect
  # (server-side: the HTTPRoute CRD is larger than client-side apply's annotation allows).
  if [[ -d "$bin/gateway-api-crds" ]]; then
    "${k[@]}" apply --server-side --field-manager=atrium-local-cluster -f "$bin/gateway-api-crds/" >/dev/null
    wait_for "Gateway API CRDs" 60 "${k[@]}" wait --for=condition=Established crd/httproutes.gateway.networking.k8s.io --timeout=1s
  fi
  [[ "${ATRIUM_SERVICE_NETWORK:-0}" == 1 ]] && service_network "$bin"
  echo "$bin" > "$dir/bin-dir"
  log "control plane ready in $((SECONDS - began))s ($nodes KWOK nodes); export KUBECONFIG=$dir/kubeconfig"
}

down() {
  [[ -f "$dir/pids" ]] || { log "nothing to stop in $dir"; return 0; }
  local pid name
  # Reverse start order: KWOK and controllers first, etcd last.
  tac "$dir/pids" | while read -r pid name; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + 10))
  while read -r pid name; do
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done < "$dir/pids"
  rm -f "$dir/pids"; rm -rf "$dir/etcd"
  log "stopped"
}

status() {
  [[ -s "$dir/pids" ]] || { echo "not running"; return 1; }
  local pid name rc=0
  while read -r pid name; do
    if kill -0 "$pid" 2>/dev/null; then echo "$name running (pid $pid)"; else echo "$name stopped"; rc=1; fi
  done < "$dir/pids"
  return $rc
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  stop-component|start-component)
    [[ -n "${2:-}" ]] || { echo "usage: $0 $cmd NAME [DIR]" >&2; exit 2; }
    name="$2"; dir="${3:-${ATRIUM_CLUSTER_DIR:-$PWD/.cluster}}"
    "${cmd//-/_}" "$name" ;;
  *) echo "usage: $0 up|down|status|stop-component|start-component [DIR]" >&2; exit 2 ;;
esac
