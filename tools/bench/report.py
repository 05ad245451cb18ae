"""The gateway benchmark's report: median [min–max] tables in docs/benchmarks.md (its gateway
section, see splice.py), the raw figures as JSON, and an SVG chart of
CPU per request and added p99 per contender."""

import json
import os
import statistics
import subprocess

from splice import splice


def machine():
    """CPU model and core count, from /proc/cpuinfo."""
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} cores, {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // 2**30} GiB"


def versions(tools):
    """One version line per tool (what the tool says about itself)."""
    asks = {
        "nginx": ["-v"], "haproxy": ["-v"], "envoy": ["--version"], "wrk": ["-v"],
        "redis-server": ["--version"], "atrium": ["--version"],
    }
    out = {}
    for name, flags in asks.items():
        try:
            r = subprocess.run([tools[name]] + flags, capture_output=True, text=True, timeout=10)
            text = (r.stdout + r.stderr).strip().splitlines()
            out[name] = next((t for t in text if t.strip()), "")[:100]
        except (OSError, subprocess.TimeoutExpired):
            out[name] = "?"
    return out


def spread(values, fmt):
    """median [min–max] of the repetitions."""
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return "–"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def added(results, name, rate_index, key):
    """What the contender adds over the backend alone, per repetition, in ms."""
    floor = next(iter(results.values()))
    return [run["open"][rate_index][key] - base["open"][rate_index][key]
            for run, base in zip(results[name], floor)]


def tables(meta, results):
    """The markdown of the run."""
    rates = meta["rates"]
    names = list(results)
    floor = names[0]
    lines = [
        f"Run {meta['date']} on {meta['machine']} (Linux {meta['kernel']}); "
        f"{meta['cores']}. {meta['repetitions']} repetitions; each figure is "
        "median [min–max] over them.",
        "",
        f"- Closed loop: `wrk -t1 -c{meta['connections']} -d{meta['seconds']:g}s` after a 1 s "
        "warm-up. *CPU µs/request* is the user + system CPU of all the proxy's processes and "
        "threads (from /proc) over the requests served; *CPU %* shows whether the proxy's core "
        "was the bottleneck (100 %) or the load core was.",
        f"- Open loop: `openloop --rate R --seconds {meta['open_seconds']:g} --connections 8` "
        "(`examples/openloop.rs`: HTTP/1.1 keep-alive, latency from when each request was due, "
        "so a late response also counts against the requests it delays) at "
        f"{' and '.join(f'{r:,} req/s' for r in rates)} (25 % and 50 % of "
        "nginx's closed-loop throughput unless set). *Added* latency is the contender's "
        "percentile minus the backend's alone at the same rate in the same repetition.",
        "- Versions: " + "; ".join(f"{k} `{v}`" for k, v in meta["versions"].items()) + ".",
        "",
        "- *Steal* is the share of the proxy core's time the hypervisor gave to others during "
        "the contender's runs (/proc/stat): a stolen core stalls every request on it, which "
        "is what the widest p99 spreads below are made of.",
        "",
        "| contender | CPU µs/request | req/s (closed loop) | CPU % | peak RSS MiB | steal % |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        runs = results[name]
        label = f"{name} (its own CPU)" if name == floor else name
        lines.append(
            f"| {label} | {spread([r['cpu_us'] for r in runs], '{:.1f}')} | "
            f"{spread([r['rps'] for r in runs], '{:,.0f}')} | "
            f"{spread([r['cpu_util'] * 100 for r in runs], '{:.0f}')} | "
            f"{spread([r['rss_mib'] for r in runs], '{:.0f}')} | "
            f"{spread([r['steal'] * 100 for r in runs], '{:.1f}')} |")
    for name in names:
        spans = [r["spans"] for r in results[name] if "spans" in r]
        if spans:
            lines += ["", f"{name}: spans exported per repetition "
                      + ", ".join(f"{s['exported']:,.0f}" for s in spans) + "; dropped "
                      + ", ".join(f"{s['dropped']:,.0f}" for s in spans) + "."]
    for i, rate in enumerate(rates):
        lines += [
            "",
            f"Open loop at {rate:,} req/s: latency of the backend alone, then added by each "
            "proxy (ms)",
            "",
            "| contender | p50 | p99 | p99.9 |",
            "| --- | --- | --- | --- |",
        ]
        base = results[floor]
        lines.append(f"| {floor} | " + " | ".join(
            spread([r["open"][i][k] for r in base], "{:.3f}") for k in ("p50", "p99", "p999"))
            + " |")
        for name in names[1:]:
            lines.append(f"| {name} | " + " | ".join(
                "+" + spread(added(results, name, i, k), "{:.3f}")
                for k in ("p50", "p99", "p999")) + " |")
    return "\n".join(lines)


def chart(meta, results):
    """Two bar panels with min–max whiskers: CPU µs/request (linear) and added p99 at the
    lower open-loop rate (log scale: an overloaded contender's seconds would flatten the
    rest)."""
    import math
    names = list(results)[1:]
    rate_index = 0
    cpu = [[r["cpu_us"] for r in results[n]] for n in names]
    p99 = [added(results, n, rate_index, "p99") for n in names]
    colours = {"proxies": "#7f8c8d", "atrium": "#2e86c1", "tls": "#af7ac5"}
    row, label_w, panel_w, top = 22, 300, 330, 50
    height = top + row * len(names) + 40
    width = label_w + 2 * panel_w + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']

    def panel(x0, series, title, unit, log):
        hi = max(max(v) for v in series) or 1.0
        floor = 0.01  # ms: the log axis starts here (smaller or negative values sit on it)
        if log:
            span = math.log10(max(hi, floor * 10) / floor)

            def pos(v):
                return (panel_w - 60) * math.log10(max(v, floor) / floor) / span
        else:
            def pos(v):
                return (panel_w - 60) * max(v, 0) / (hi * 1.1)
        out.append(f'<text x="{x0}" y="20" font-weight="bold">{title}</text>')
        out.append(f'<line x1="{x0}" y1="{top - 8}" x2="{x0}" y2="{height - 30}" stroke="#333"/>')
        for i, (name, vals) in enumerate(zip(names, series)):
            y = top + i * row
            med, lo, up = statistics.median(vals), min(vals), max(vals)
            colour = colours.get(meta["groups"].get(name, ""), "#999")
            out.append(f'<rect x="{x0}" y="{y - 7}" width="{pos(med):.1f}" height="14" '
                       f'fill="{colour}"/>')
            out.append(f'<line x1="{x0 + pos(lo):.1f}" y1="{y}" x2="{x0 + pos(up):.1f}" '
                       f'y2="{y}" stroke="black"/>')
            out.append(f'<text x="{x0 + max(pos(up), pos(med)) + 4:.1f}" y="{y + 4}">'
                       f'{med:.{2 if unit == "ms" else 1}f}</text>')
        scale = f"log scale from {floor} ms" if log else "linear"
        out.append(f'<text x="{x0}" y="{height - 12}" fill="#555">{unit}, median; line: '
                   f'min–max; {scale}</text>')

    for i, name in enumerate(names):
        out.append(f'<text x="{label_w - 8}" y="{top + i * row + 4}" text-anchor="end">'
                   f'{name.replace("&", "&amp;")}</text>')
    panel(label_w, cpu, "CPU per request (closed loop)", "µs", False)
    panel(label_w + panel_w + 20, p99,
          f"added p99 at {meta['rates'][rate_index]:,} req/s (open loop)", "ms", True)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(args, meta, results):
    """Write the JSON, the chart and the doc's gateway section; print the tables."""
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gateway.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    text = tables(meta, results)
    print(text)
    if args.only:
        print("(a partial run (--only): docs/benchmarks.md and the chart are left as they are)")
        return
    with open(args.chart, "w") as f:
        f.write(chart(meta, results))
    splice(args.doc, "gateway", text)
    print(f"wrote {args.doc}, {args.chart} and {args.out}/gateway.json")


if __name__ == "__main__":
    # Re-render the doc section and the chart from a run's JSON (no new measurement):
    #   report.py target/bench/gateway.json
    import argparse
    import sys
    if len(sys.argv) != 2:
        raise SystemExit("usage: report.py target/bench/gateway.json")
    with open(sys.argv[1]) as f:
        run = json.load(f)
    write(argparse.Namespace(out=os.path.dirname(sys.argv[1]) or ".", only="",
                             chart="docs/benchmarks-gateway.svg", doc="docs/benchmarks.md"),
          run["meta"], run["results"])
