#!/usr/bin/env python3
"""`make bench-gateway`: Atrium's gateway side by side with the backend alone, nginx, HAProxy,
Envoy and a minimal pingora proxy, on the same footing.

Layout on a machine with at least two cores: the proxy under test alone on the proxy core
(one worker), the backend (nginx, one worker), Redis, the OTLP sink, this driver and the load
generators on the load core. One contender runs at a time; each starts fresh. Per contender
and repetition:

- closed loop (wrk, one thread, --connections connections): throughput and the CPU the
  proxy's processes (every thread, from /proc) spent per request;
- open loop (examples/openloop.rs, HTTP/1.1 keep-alive, latency from when each request was
  due) at fixed rates (default 25 % and 50 % of nginx's
  closed-loop throughput, measured first): p50, p99 and p99.9, and what the proxy adds over
  the backend alone at the same rate in the same repetition;
- peak RSS (VmHWM of its processes).

The table is repeated --repetitions times (default 3) and reported as median [min–max], in
docs/benchmarks.md (between its gateway markers), target/bench/gateway.json and the chart
docs/benchmarks-gateway.svg. Only loopback addresses are ever sent to.
"""

import argparse
import http.server
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contenders as c  # noqa: E402
import measure as m  # noqa: E402
import report  # noqa: E402


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OtlpSink(http.server.BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports (any body, answered 200) and counts them."""

    exports = 0

    def do_POST(self):  # noqa: N802 (the http.server naming)
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        OtlpSink.exports += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tools", required=True, help="JSON object: wrk, openloop, nginx, haproxy, "
                   "envoy, redis-server, atrium, pingora-floor paths")
    p.add_argument("--seconds", type=float, default=3, help="closed-loop run per contender")
    p.add_argument("--open-seconds", type=float, default=3, help="each open-loop run")
    p.add_argument("--repetitions", type=int, default=3)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rates", default="", help="open-loop rates, comma-separated (default: "
                   "25%% and 50%% of nginx's closed-loop throughput)")
    p.add_argument("--only", default="", help="run only contenders whose name contains this")
    p.add_argument("--out", default="target/bench")
    p.add_argument("--doc", default="docs/benchmarks.md")
    p.add_argument("--chart", default="docs/benchmarks-gateway.svg")
    return p.parse_args()


def contenders(tools, work, ports, keys):
    """Every row, in table order. argv items may hold {port} and {admin}."""
    backend = ports["backend"]
    def gateway(listen):
        return [tools["atrium"], "gateway", "--threads", "1", "--listen", listen,
                "--admin-listen", "127.0.0.1:{admin}", "--config-dir", f"{work}/routes",
                "--access-log-sample-rate", "0", "--grace-period", "0"]

    atrium = gateway("127.0.0.1:{port}")
    nocache = ["--jwt-cache-size", "0"]
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports['otlp']}",
            "OTEL_TRACES_SAMPLER": "always_on"}
    tls_args = ["--tls-listen", "127.0.0.1:{port}", "--tls-cert", keys["tls"][0],
                "--tls-key", keys["tls"][1]]
    nginx = [tools["nginx"], "-p", work, "-c"]
    C = c.Contender
    return [
        C("backend alone", "floor"),
        C("nginx", "proxies", nginx + [f"{work}/nginx-proxy.conf"]),
        C("HAProxy", "proxies", [tools["haproxy"], "-db", "-f", f"{work}/haproxy.cfg"]),
        C("Envoy", "proxies", [tools["envoy"], "--concurrency", "1", "--disable-hot-restart",
                               "-l", "warn", "-c", f"{work}/envoy.yaml"]),
        C("pingora (minimal proxy)", "proxies", [tools["pingora-floor"], "--listen",
          "127.0.0.1:{port}", "--upstream", f"127.0.0.1:{backend}", "--threads", "1"]),
        C("atrium: plain route", "atrium", atrium),
        C("atrium: template + rewrite", "atrium", atrium, path="/t/users/42"),
        C("atrium: JWT HS256 (cached)", "atrium", atrium, path="/hs", token=keys["hs_token"]),
        C("atrium: JWT HS256 (no cache)", "atrium", atrium + nocache, path="/hs",
          token=keys["hs_token"]),
        C("atrium: JWT RS256 (cached)", "atrium", atrium, path="/rs", token=keys["rs_token"]),
        C("atrium: JWT RS256 (no cache)", "atrium", atrium + nocache, path="/rs",
          token=keys["rs_token"]),
        C("atrium: JWT ES256 (cached)", "atrium", atrium, path="/es", token=keys["es_token"]),
        C("atrium: JWT ES256 (no cache)", "atrium", atrium + nocache, path="/es",
          token=keys["es_token"]),
        C("atrium: JWT + local rate limit", "atrium", atrium, path="/local",
          token=keys["hs_token"]),
        C("atrium: JWT + global rate limit (Redis)", "atrium", atrium, path="/global",
          token=keys["hs_token"]),
        C("atrium: tracing (every request sampled)", "atrium", atrium, env=otel),
        C("nginx: TLS (OpenSSL)", "tls", nginx + [f"{work}/nginx-tls.conf"], tls=True),
        C("atrium: TLS (rustls)", "tls", gateway(f"127.0.0.1:{ports['spare']}") + tls_args,
          tls=True),
    ]


def write_configs(work, ports, keys):
    backend = ports["backend"]
    c.write(f"{work}/backend.conf", c.backend_conf(work, backend))
    c.write(f"{work}/nginx-proxy.conf", c.nginx_proxy_conf(work, ports["proxy"], backend))
    c.write(f"{work}/nginx-tls.conf", c.nginx_proxy_conf(work, ports["proxy"], backend,
                                                          keys["tls"]))
    c.write(f"{work}/haproxy.cfg", c.haproxy_conf(ports["proxy"], backend))
    c.write(f"{work}/envoy.yaml", c.envoy_conf(ports["proxy"], backend))
    c.write(f"{work}/routes/bench.yaml", c.atrium_routes(backend, keys, ports["redis"]))


def start(argv, log, env=None, cpu=None):
    """Start a process (on `cpu` when given) in a session of its own, output into `log`."""
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    full_env = dict(os.environ, ATRIUM_LOG_LEVEL="warn", **(env or {}))
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=full_env, stdout=out, stderr=out,
                                start_new_session=True)


def stop(proc):
    if proc is None:
        return
    try:
        os.killpg(proc.pid, 9)
    except ProcessLookupError:
        pass
    proc.wait()


def measure_one(args, tools, work, ports, cont, rates, proxy_cpu):
    """Start the contender, load it closed and open loop, stop it; its figures."""
    proc = None
    if cont.argv:
        argv = [a.format(port=ports["proxy"], admin=ports["admin"]) for a in cont.argv]
        log = "".join(ch if ch.isalnum() else "-" for ch in cont.name)
        proc = start(argv, f"{work}/{log}.log", cont.env, proxy_cpu)
        port = ports["proxy"]
    else:
        port = ports["backend"]
    scheme = "https" if cont.tls else "http"
    url = f"{scheme}://127.0.0.1:{port}{cont.path}"
    try:
        m.wait_ok(url, cont.token, proc=proc)
        pids = m.tree(proc.pid) if proc else m.tree(ports["backend_pid"])
        m.wrk(tools, url, cont.token, 1, args.connections)  # warm-up
        steal0 = m.steal_ticks(proxy_cpu)
        before, t0 = m.cpu_seconds(pids), time.monotonic()
        closed = m.wrk(tools, url, cont.token, args.seconds, args.connections)
        cpu = m.cpu_seconds(pids) - before
        wall = time.monotonic() - t0
        row = {
            "rps": closed["requests"] / closed["seconds"],
            "cpu_us": cpu * 1e6 / max(closed["requests"], 1),
            "cpu_util": cpu / wall,
            "failed": closed["failed"],
            "open": [m.open_loop(tools, url, cont.token, r, args.open_seconds,
                                 ports["ca_file"]) for r in rates],
        }
        if cont.env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            row["spans"] = m.span_counts(ports["admin"])
        row["rss_mib"] = m.peak_rss_mib(m.tree(proc.pid) if proc else pids)
        row["steal"] = m.steal_ticks(proxy_cpu, steal0, time.monotonic() - t0)
        row["failed"] += sum(o["failed"] for o in row["open"])
        return row
    finally:
        stop(proc)


def main():
    args = parse_args()
    tools = json.loads(args.tools)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("error: the benchmark needs two cores (the proxy alone on one)")
    load_cpu, proxy_cpu = cpus[0], cpus[-1]
    os.sched_setaffinity(0, {load_cpu})  # this driver and all it starts unpinned: load core
    work = tempfile.mkdtemp(prefix="atrium-bench-")
    ports = {k: free_port() for k in ("backend", "proxy", "admin", "spare", "redis", "otlp")}
    keys = c.make_keys(work, tools["atrium"])
    ports["ca_file"] = keys["ca"]
    write_configs(work, ports, keys)
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", ports["otlp"]), OtlpSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    backend = start([tools["nginx"], "-p", work, "-c", f"{work}/backend.conf"],
                    f"{work}/backend.log")
    redis = start([tools["redis-server"], "--port", str(ports["redis"]), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no"], f"{work}/redis.log")
    ports["backend_pid"] = backend.pid
    try:
        m.wait_ok(f"http://127.0.0.1:{ports['backend']}/")
        rows = contenders(tools, work, ports, keys)
        if args.only:
            rows = [r for r in rows if args.only in r.name or r.group == "floor"]
        if args.rates:
            rates = [int(r) for r in args.rates.split(",")]
        else:
            nginx = next(r for r in contenders(tools, work, ports, keys) if r.name == "nginx")
            cal = measure_one(argparse.Namespace(**{**vars(args), "seconds": 2}), tools, work,
                              ports, nginx, [], proxy_cpu)
            rates = [int(round(cal["rps"] * f, -2)) for f in (0.25, 0.5)]
            print(f"nginx closed loop {cal['rps']:.0f} req/s: open-loop rates {rates} req/s",
                  flush=True)
        results = {r.name: [] for r in rows}
        total = len(rows) * args.repetitions
        done, started = 0, time.monotonic()
        for rep in range(args.repetitions):
            for cont in rows:
                fig = measure_one(args, tools, work, ports, cont, rates, proxy_cpu)
                results[cont.name].append(fig)
                done += 1
                eta = (time.monotonic() - started) / done * (total - done)
                o = fig["open"][-1] if fig["open"] else {}
                print(f"[{done}/{total}, ~{eta:.0f} s left] rep {rep + 1} {cont.name}: "
                      f"{fig['cpu_us']:.1f} µs CPU/request, {fig['rps']:.0f} req/s, "
                      f"p99 {o.get('p99', float('nan')):.2f} ms at {o.get('rate', 0)}/s, "
                      f"{fig['rss_mib']:.0f} MiB, {fig['failed']} failed", flush=True)
                if fig["failed"]:
                    raise SystemExit(f"error: {cont.name}: {fig['failed']} requests failed")
        meta = {
            "machine": report.machine(),
            "kernel": platform.release(),
            "cores": f"proxy on CPU {proxy_cpu}; backend, Redis, OTLP sink and load generators "
                     f"on CPU {load_cpu}",
            "rates": rates,
            "seconds": args.seconds,
            "open_seconds": args.open_seconds,
            "connections": args.connections,
            "repetitions": args.repetitions,
            "versions": report.versions(tools),
            "otlp_exports": OtlpSink.exports,
            "date": time.strftime("%Y-%m-%d"),
            "groups": {r.name: r.group for r in rows},
        }
        report.write(args, meta, results)
    finally:
        stop(backend)
        stop(redis)
        sink.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
