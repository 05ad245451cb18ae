#!/usr/bin/env bash
# Gateway benchmark: requests per second and CPU per request of `atrium gateway` (release
# build) against nginx as a reverse proxy and against the backend directly, all on 127.0.0.1,
# with wrk as the load generator; then the gateway with JWT (HS256 and RS256, token cache on
# and off), with JWT + a local rate limit, and with tracing on (every request sampled, spans
# exported over OTLP to a real Jaeger v2). Report: target/bench/gateway.txt.
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
# Keys for the policy runs: an HMAC secret and an RSA key pair; tokens from `atrium token`.
hmac="bench-hmac-secret-0123456789abcdef0123456789"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.key" 2>/dev/null
openssl pkey -in "$work/rsa.key" -pubout -out "$work/rsa.pub"
printf '%s' "$hmac" > "$work/hmac.key"
hs_token="$(target/release/atrium token --key-file "$work/hmac.key" --sub bench --ttl 1h)"
rs_token="$(target/release/atrium token --key-file "$work/rsa.key" --sub bench --ttl 1h)"
cat > "$work/config/bench.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: keys}
stringData:
  hmac: "$hmac"
  rsa: |
$(sed 's/^/    /' "$work/rsa.pub")
---
apiVersion: atrium.dev/v1alpha1
kind: Microservice
metadata: {name: bench}
spec: {ports: [{name: http, port: $backend}], endpoints: [{address: 127.0.0.1}]}
---
apiVersion: atrium.dev/v1alpha1
kind: GatewayRoute
metadata: {name: bench}
spec:
  rules:
  - {name: plain, backends: [{microservice: bench}]}
  - name: hs256
    matches: [{path: {type: PathPrefix, value: /hs}}]
    backends: [{microservice: bench}]
    auth: {jwt: {providers: [{name: hs, jwks: {secretRef: {name: keys, key: hmac}}, forwardClaims: [{claim: sub, header: x-user-id}]}]}}
  - name: rs256
    matches: [{path: {type: PathPrefix, value: /rs}}]
    backends: [{microservice: bench}]
    auth: {jwt: {providers: [{name: rs, jwks: {secretRef: {name: keys, key: rsa}}, forwardClaims: [{claim: sub, header: x-user-id}]}]}}
  - name: hs256-limited
    matches: [{path: {type: PathPrefix, value: /limited}}]
    backends: [{microservice: bench}]
    auth: {jwt: {providers: [{name: hs, jwks: {secretRef: {name: keys, key: hmac}}}]}}
    rateLimit: {requests: 1000000000, period: 1s, key: {type: Claim, name: sub}}
YAML
start_gateway() { # start_gateway LISTEN ADMIN [FLAGS...]: prints nothing, waits for /readyz
  local listen="$1" adm="$2"; shift 2
  ATRIUM_LOG_LEVEL=warn target/release/atrium gateway --threads "$threads" --listen "127.0.0.1:$listen" \
    --admin-listen "127.0.0.1:$adm" --config-dir "$work/config" --access-log-sample-rate 0 "$@" & pids+=($!)
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$adm/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
}
start_gateway "$gateway" "$admin"; gateway_pid=$!
# Tracing on, every request sampled, exporting to Jaeger (its CPU is not counted).
jaeger_otlp="$(port)"
JAEGER_OTLP_HTTP="127.0.0.1:$jaeger_otlp" JAEGER_QUERY_HTTP="127.0.0.1:$(port)" \
  JAEGER_QUERY_GRPC="127.0.0.1:$(port)" JAEGER_HEALTH="127.0.0.1:$(port)" \
  "$(tools/local-cluster/build.sh)/jaeger" --config tools/local-cluster/jaeger.yaml 2>"$work/jaeger.log" & pids+=($!)
traced="$(port)"; traced_admin="$(port)"
OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$jaeger_otlp" OTEL_TRACES_SAMPLER=always_on \
  start_gateway "$traced" "$traced_admin"; traced_pid=$!
nocache="$(port)"; nocache_admin="$(port)"
start_gateway "$nocache" "$nocache_admin" --jwt-cache-size 0; nocache_pid=$!
curl -fsS "http://127.0.0.1:$gateway/" >/dev/null
curl -fsS -H "Authorization: Bearer $hs_token" "http://127.0.0.1:$gateway/hs" >/dev/null
curl -fsS -H "Authorization: Bearer $rs_token" "http://127.0.0.1:$gateway/rs" >/dev/null
curl -fsS -H "Authorization: Bearer $hs_token" "http://127.0.0.1:$gateway/limited" >/dev/null

# CPU seconds (user + system) of a process tree's main process, from /proc.
cpu() { awk -v t="$(getconf CLK_TCK)" '{print ($14 + $15) / t}' "/proc/$1/stat"; }
nginx_worker() { pgrep -P "$(cat "$work/nginx/nginx.pid")" | head -1; }

run() { # run NAME URL PID [TOKEN]: wrk against URL, CPU measured on PID (or none)
  local name="$1" url="$2" pid="${3:-}" token="${4:-}" before after out rps reqs
  local auth=()
  [[ -n "$token" ]] && auth=(-H "Authorization: Bearer $token")
  [[ -n "$pid" ]] && before="$(cpu "$pid")"
  out="$(wrk -t1 -c"$conns" -d"${secs}s" --latency "${auth[@]}" "$url")"
  if grep -q "Non-2xx" <<<"$out"; then echo "error: $name answered non-2xx responses" >&2; exit 1; fi
  [[ -n "$pid" ]] && after="$(cpu "$pid")"
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  reqs="$(awk '/requests in/ {print $1}' <<<"$out")"
  p50="$(awk '$1=="50%" {print $2}' <<<"$out")"; p99="$(awk '$1=="99%" {print $2}' <<<"$out")"
  if [[ -n "$pid" ]]; then
    printf '%-34s %10s req/s   p50 %8s   p99 %8s   %6.1f µs CPU/request\n' "$name" "$rps" "$p50" "$p99" \
      "$(awk -v a="$after" -v b="$before" -v n="$reqs" 'BEGIN {print (a - b) * 1e6 / n}')"
  else
    printf '%-34s %10s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99"
  fi
}

report="$(
  echo "gateway benchmark: wrk -t1 -c$conns -d${secs}s on 127.0.0.1, one worker per proxy, $(nproc) cores"
  run "backend directly (nginx)" "http://127.0.0.1:$backend/"
  run "nginx reverse proxy" "http://127.0.0.1:$nginx_proxy/" "$(nginx_worker)"
  run "atrium gateway" "http://127.0.0.1:$gateway/" "$gateway_pid"
  run "atrium + tracing (sampled 1.0)" "http://127.0.0.1:$traced/" "$traced_pid"
  run "atrium + JWT HS256 (cached)" "http://127.0.0.1:$gateway/hs" "$gateway_pid" "$hs_token"
  run "atrium + JWT HS256 (no cache)" "http://127.0.0.1:$nocache/hs" "$nocache_pid" "$hs_token"
  run "atrium + JWT RS256 (cached)" "http://127.0.0.1:$gateway/rs" "$gateway_pid" "$rs_token"
  run "atrium + JWT RS256 (no cache)" "http://127.0.0.1:$nocache/rs" "$nocache_pid" "$rs_token"
  run "atrium + JWT HS256 + rate limit" "http://127.0.0.1:$gateway/limited" "$gateway_pid" "$hs_token"
)"
echo "$report"
dropped="$(curl -fsS "http://127.0.0.1:$traced_admin/metrics" | awk '/^atrium_trace_spans_(exported|dropped)_total/ {print "  " $0}')"
report+=$'\n'"tracing run, spans: "$'\n'"$dropped"
echo "tracing run, spans:"; echo "$dropped"
mkdir -p target/bench && echo "$report" > target/bench/gateway.txt
