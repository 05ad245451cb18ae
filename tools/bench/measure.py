"""Measuring one contender: processes, CPU and memory from /proc, closed-loop load with wrk,
open-loop load at a fixed rate with examples/openloop.rs. Every load generator runs on the load core."""

import ipaddress
import json
import os
import re
import ssl
import subprocess
import time
import urllib.parse
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def check_loopback(url):
    """Refuse any URL whose host is not a loopback address: the bench sends nowhere else."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"error: refusing to send load to {url}: not a loopback address")
    return url


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (state first), or [] if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def tree(pid):
    """The process and all its descendants (nginx's workers, for one)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(entry)
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pids):
    """User + system CPU seconds of these processes (all their threads), from /proc."""
    total = 0.0
    for p in pids:
        fields = stat_fields(p)
        if fields:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def peak_rss_mib(pids):
    """Sum of the processes' peak resident set (VmHWM), in MiB."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def steal_ticks(cpu, since=None, seconds=None):
    """The core's steal counter (/proc/stat, in ticks); with `since`, the share of `seconds`
    stolen since then."""
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] == f"cpu{cpu}":
                ticks = int(fields[8])
                break
        else:
            return 0
    if since is None:
        return ticks
    return (ticks - since) / CLK_TCK / seconds if seconds else 0.0


def span_counts(admin_port):
    """The gateway's own count of spans exported and dropped (its /metrics)."""
    url = check_loopback(f"http://127.0.0.1:{admin_port}/metrics")
    counts = {"exported": 0.0, "dropped": 0.0}
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            for kind in counts:
                if line.startswith(f"atrium_trace_spans_{kind}_total"):
                    counts[kind] += float(line.rsplit(" ", 1)[1])
    return counts


def fetch(url, token="", timeout=2.0):
    """One GET; the status code, or None when the connection fails."""
    req = urllib.request.Request(check_loopback(url))
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    ctx = ssl._create_unverified_context() if url.startswith("https") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def wait_ok(url, token="", timeout=30.0, proc=None):
    """Wait until the URL answers 200 (the contender is up and routes to the backend)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"error: the process serving {url} exited ({proc.returncode})")
        last = fetch(url, token)
        if last == 200:
            return
        time.sleep(0.05)
    raise SystemExit(f"error: {url} did not answer 200 within {timeout:.0f} s (last: {last})")


def auth_header(token):
    return [f"Authorization: Bearer {token}"] if token else []


def wrk(tools, url, token, seconds, connections):
    """Closed loop: wrk with one thread and `connections` connections for `seconds`."""
    argv = [tools["wrk"], "-t1", f"-c{connections}", f"-d{int(round(seconds))}s"]
    for h in auth_header(token):
        argv += ["-H", h]
    out = subprocess.run(argv + [check_loopback(url)], check=True, capture_output=True,
                         text=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    elapsed = float(re.search(r"requests in ([\d.]+)s", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return {"requests": requests, "seconds": elapsed, "failed": failed}


def open_loop(tools, url, token, rate, seconds, ca_file):
    """Open loop: examples/openloop.rs at a fixed rate over HTTP/1.1 keep-alive; ms."""
    argv = [tools["openloop"], "--url", check_loopback(url), "--rate", str(rate),
            "--seconds", f"{seconds:g}", "--connections", "8"]
    for h in auth_header(token):
        argv += ["--header", h]
    if url.startswith("https"):
        argv += ["--ca-file", ca_file]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out)
