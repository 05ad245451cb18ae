#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy, once per version.
#
#   tools/local-cluster/build.sh         # prints the directory that holds the binaries
#
# Output: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubectl,
# kwok, helm, kstatus, prometheus, promtool, coredns, jaeger, kwok-stages.yaml and gateway-api-crds/ in $ATRIUM_CACHE_DIR/bin/<versions>/ (default ~/.cache/atrium). Components that
# are already there are not rebuilt. If KUBEBUILDER_ASSETS names a directory with the server
# binaries, those are used instead of building them (kwok and helm are still built if missing).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${ATRIUM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atrium}"
out="$cache/bin/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION"
mkdir -p "$out"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

log() { echo "[local-cluster build] $*" >&2; }

have() { for b in "$@"; do [[ -x "$out/$b" ]] || return 1; done; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    if [[ -x "$KUBEBUILDER_ASSETS/$b" && ! -e "$out/$b" ]]; then ln -sf "$KUBEBUILDER_ASSETS/$b" "$out/$b"; fi
  done
fi

build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
timed() { local start=$SECONDS; "$@"; log "done in $((SECONDS - start))s"; }

if ! have kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl; then
  v="${KUBERNETES_VERSION#v}"; major="${v%%.*}"; rest="${v#*.}"; minor="${rest%%.*}"
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
  done
  log "building Kubernetes $KUBERNETES_VERSION (first time: 10-25 min on 2 cores) into $out"
  (cd "$here/kubernetes" && timed go build -trimpath -tags notest,grpcnotrace -ldflags "$ld" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
fi

if ! have etcd; then
  log "building etcd $ETCD_VERSION"
  (cd "$here/etcd" && timed go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
fi

if ! have kwok; then
  log "building kwok $KWOK_VERSION"
  (cd "$here/kwok" && timed go build -trimpath -ldflags "-s -w" -o "$out/kwok" sigs.k8s.io/kwok/cmd/kwok)
fi

if [[ ! -s "$out/kwok-stages.yaml" ]]; then
  (cd "$here/kwok" && go mod download sigs.k8s.io/kwok)
  src="$(cd "$here/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
  tmp="$out/kwok-stages.yaml.tmp"; : > "$tmp"
  for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml \
           pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    { echo "---"; cat "$src/$f"; } >> "$tmp"
  done
  mv "$tmp" "$out/kwok-stages.yaml"
fi

if ! have helm; then
  kv="${KUBERNETES_VERSION#v}"; kmaj="${kv%%.*}"; krest="${kv#*.}"; kmin="${krest%%.*}"
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ld+=" -X $p.k8sVersionMajor=$kmaj -X $p.k8sVersionMinor=$kmin"
  done
  log "building helm $HELM_VERSION"
  (cd "$here/helm" && timed go build -trimpath -ldflags "$ld" -o "$out/helm" helm.sh/helm/v3/cmd/helm)
fi

# kstatus (sigs.k8s.io/cli-utils): the tests check that GitOps tools read our status right.
ks="$cache/bin/cli-utils-$CLI_UTILS_VERSION"
if [[ ! -x "$ks/kstatus" ]]; then
  log "building kstatus (cli-utils $CLI_UTILS_VERSION)"
  mkdir -p "$ks"
  (cd "$here/../kstatus" && timed go build -trimpath -ldflags "-s -w" -o "$ks/kstatus" .)
fi
ln -sfn "$ks/kstatus" "$out/kstatus"

# Prometheus and promtool: the tests scrape with a real Prometheus using kubernetes_sd_configs,
# which Debian's package leaves out.
pd="$cache/bin/prometheus-$PROMETHEUS_MODULE_VERSION"
if [[ ! -x "$pd/prometheus" || ! -x "$pd/promtool" ]]; then
  log "building prometheus and promtool (module $PROMETHEUS_MODULE_VERSION; first time: ~10 min on 2 cores)"
  mkdir -p "$pd"
  (cd "$here/prometheus" && timed go build -trimpath -ldflags "-s -w" -o "$pd/" \
    github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool)
fi
ln -sfn "$pd/prometheus" "$out/prometheus"
ln -sfn "$pd/promtool" "$out/promtool"

# CoreDNS for the local cluster's DNS (tools/local-cluster/coredns: its kubernetes plugin and a
# few others).
cd_="$cache/bin/coredns-$COREDNS_VERSION"
if [[ ! -x "$cd_/coredns" ]]; then
  log "building CoreDNS $COREDNS_VERSION (first time: ~1.5 min on 2 cores)"
  mkdir -p "$cd_"
  (cd "$here/coredns" && timed go build -trimpath -ldflags "-s -w" -o "$cd_/coredns" .)
fi
ln -sfn "$cd_/coredns" "$out/coredns"

# Jaeger v2, the trace backend the tests and `make run` send OTLP to.
jd="$cache/bin/jaeger-$JAEGER_VERSION"
if [[ ! -x "$jd/jaeger" ]]; then
  log "building Jaeger $JAEGER_VERSION (first time: several minutes on 2 cores)"
  mkdir -p "$jd"
  (cd "$here/jaeger" && timed go build -trimpath -ldflags "-s -w" -o "$jd/jaeger" \
    github.com/jaegertracing/jaeger/cmd/jaeger)
fi
ln -sfn "$jd/jaeger" "$out/jaeger"

# The Gateway API's standard-channel CRDs, read from its Go module (never copied into the repo).
gw="$cache/gateway-api-$GATEWAY_API_VERSION/crds"
if [[ ! -s "$gw/gateway.networking.k8s.io_httproutes.yaml" ]]; then
  log "fetching the Gateway API $GATEWAY_API_VERSION standard CRDs from its module"
  mod="$(cd "$here/../gateway-api" && go mod download sigs.k8s.io/gateway-api && \
    go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)"
  mkdir -p "$gw.tmp"
  cp "$mod"/config/crd/standard/*.yaml "$gw.tmp/"
  chmod u+w "$gw.tmp"/*.yaml
  rm -rf "$gw"; mv "$gw.tmp" "$gw"
fi
ln -sfn "$gw" "$out/gateway-api-crds"

echo "$out"
