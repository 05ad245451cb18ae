#!/usr/bin/env bash
# Gateway benchmark: requests per second and CPU per request of `atrium gateway` (release
# build) against nginx as a reverse proxy and against the backend directly, all on 127.0.0.1,
# with wrk as the load generator. Report: target/bench/gateway.txt.
#
# Needs wrk and nginx (Debian packages `wrk`, `nginx`). Knobs: BENCH_SECONDS (10),
# BENCH_CONNECTIONS (32), BENCH_THREADS (1: one worker for each proxy).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed (apt-get install $tool)" >&2; exit 1; }
done
secs="${BENCH_SECONDS:-10}"; conns="${BENCH_CONNECTIONS:-32}"; threads="${BENCH_THREADS:-1}"
cargo build --release --locked --quiet
work="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
backend="$(port)"; nginx_proxy="$(port)"; gateway="$(port)"; admin="$(port)"

mkdir -p "$work/nginx" "$work/config"
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes $threads;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  upstream backend { server 127.0.0.1:$backend; keepalive 64; }
  server { listen 127.0.0.1:$backend; location / { return 200 "ok\n"; } }
  server {
    listen 127.0.0.1:$nginx_proxy;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" & pids+=($!)
cat > "$work/config/bench.yaml" <<YAML
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {name: bench}
spec: {ports: [{name: http, port: $backend}], endpoints: [{address: 127.0.0.1}]}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {name: bench}
spec: {rules: [{backends: [{microservice: bench}]}]}
YAML
ATRIUM_LOG_LEVEL=warn target/release/atrium gateway --threads "$threads" --listen "127.0.0.1:$gateway" \
  --admin-listen "127.0.0.1:$admin" --config-dir "$work/config" & pids+=($!)
gateway_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$gateway/" >/dev/null

# CPU seconds (user + system) of a process tree's main process, from /proc.
cpu() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
nginx_worker() { pgrep -P "$(cat "$work/nginx/nginx.pid")" | head -1; }

run() { # run NAME URL PID: wrk against URL, CPU measured on PID (or none)
  local name="$1" url="$2" pid="${3:-}" before after out rps reqs
  [[ -n "$pid" ]] && before="$(cpu "$pid")"
  out="$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$url")"
  [[ -n "$pid" ]] && after="$(cpu "$pid")"
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"; p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  if [[ -n "$pid" ]]; then
    printf '%-26s %10s req/s   p50 %8s   p99 %8s   %6.1f µs CPU/request\n' "$name" "$rps" "$p50" "$p99" \
      "$(awk -v a="$after" -v b="$before" -v n="$reqs" 'BEGIN {print (a - b) * 1e6 / n}')"
  else
    printf '%-26s %10s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99"
  fi
}

report="$(
  echo "gateway benchmark: wrk -t1 -c$conns -d${secs}s on 127.0.0.1, one worker per proxy, $(nproc) cores"
  run "backend directly (nginx)" "http://127.0.0.1:$backend/"
  run "nginx reverse proxy" "http://127.0.0.1:$nginx_proxy/" "$(nginx_worker)"
  run "atrium gateway" "http://127.0.0.1:$gateway/" "$gateway_pid"
)"
echo "$report"
mkdir -p target/bench && echo "$report" > target/bench/gateway.txt
