#!/usr/bin/env python3
"""Plot hookflow's benchmark next to the peers' as one SVG (standard library only).

usage: bench/plot.py --hookflow bench.json [--hookflow more.json ...]
                     [--peers results.jsonl ...] --out docs/benchmarks.svg

--hookflow: the file written by `hookflow-bench --json`.
--peers:    JSON lines written by ../shared/peers/bench.sh (labels nodered-sync#1, n8n-sync#1, ...).

Two panels, 64 connections: throughput (log scale; for hookflow the end-to-end 3-step flow's
completed runs/s, `result` mode and durable `accepted` ingest; for the peers the same flow
answering after the sink call) and p99 latency (log scale).
"""

import argparse
import json
import math
import statistics
from collections import defaultdict


def load_hookflow(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            rows += json.load(f)["results"]
    return rows


def load_peers(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    r = json.loads(line)
                    if "rps" in r:
                        rows.append(r)
    return rows


def series(hook_rows, peer_rows, conns):
    """[(label, throughput/s, p99 ms, colour)] — medians over repeated runs."""
    acc = defaultdict(lambda: ([], []))
    colours = {}

    def add(label, tput, p99, colour):
        acc[label][0].append(tput)
        acc[label][1].append(p99)
        colours[label] = colour

    for r in hook_rows:
        sysname = r["system"].replace("hookflow-", "hookflow ")
        if r["test"] == "e2e":
            add(f"{sysname}: 3-step flow, completed/s", r["completed_per_s"], r["sink_p99_ms"], "#1f6feb")
        elif r["conns"] != conns:
            continue
        elif r["test"] == "result":
            add(f"{sysname}: 3-step flow, respond: result", r["rps"], r["p99_ms"], "#2da44e")
        elif r["test"] == "ingest":
            add(f"{sysname}: durable ingest (accepted)", r["rps"], r["p99_ms"], "#8250df")
        elif r["test"] == "ingest_verified":
            add(f"{sysname}: ingest + standard_webhooks", r["rps"], r["p99_ms"], "#bf8700")
    for r in peer_rows:
        if r.get("conns") != conns:
            continue
        base = r["label"].split("#")[0]
        if base == "nodered-sync":
            add("Node-RED 4.1.15: respond after sink", r["rps"], r["p99_ms"], "#cf222e")
        elif base == "nodered-async":
            add("Node-RED 4.1.15: respond first (not durable)", r["rps"], r["p99_ms"], "#fa7970")
        elif base == "n8n-sync":
            add("n8n 2.8.4: last node", r["rps"], r["p99_ms"], "#57606a")
        elif base == "n8n-async":
            add("n8n 2.8.4: immediately", r["rps"], r["p99_ms"], "#8c959f")
    out = []
    for label, (t, p) in acc.items():
        out.append((label, statistics.median(t), statistics.median(p), colours[label]))
    out.sort(key=lambda x: -x[1])
    return out


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def panel(x0, y0, w, rows, idx, title, unit, bar_h=22, gap=8, label_w=330):
    """Horizontal log-scale bars."""
    vals = [r[idx] for r in rows if r[idx] > 0]
    lo = 10 ** math.floor(math.log10(min(vals))) if vals else 1
    hi = 10 ** math.ceil(math.log10(max(vals))) if vals else 10
    if hi <= lo:
        hi = lo * 10
    plot_w = w - label_w - 90
    sx = lambda v: x0 + label_w + plot_w * (math.log10(max(v, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    parts = [f'<text x="{x0}" y="{y0}" font-size="15" font-weight="bold">{esc(title)}</text>']
    top = y0 + 14
    height = len(rows) * (bar_h + gap)
    d = lo
    while d <= hi * 1.0001:
        x = sx(d)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + height}" stroke="#d0d7de" stroke-width="1"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + height + 14}" font-size="11" text-anchor="middle" fill="#57606a">{d:g}</text>')
        d *= 10
    for i, r in enumerate(rows):
        y = top + i * (bar_h + gap)
        v = r[idx]
        parts.append(f'<text x="{x0 + label_w - 8}" y="{y + bar_h * 0.7:.1f}" font-size="12" text-anchor="end">{esc(r[0])}</text>')
        x1 = sx(v)
        parts.append(f'<rect x="{x0 + label_w}" y="{y}" width="{max(x1 - x0 - label_w, 1):.1f}" height="{bar_h}" fill="{r[3]}"/>')
        parts.append(f'<text x="{x1 + 5:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="12">{v:,.0f} {unit}</text>' if v >= 10 else
                     f'<text x="{x1 + 5:.1f}" y="{y + bar_h * 0.7:.1f}" font-size="12">{v:.2f} {unit}</text>')
    parts.append(f'<text x="{x0 + label_w + plot_w / 2:.1f}" y="{top + height + 30}" font-size="11" text-anchor="middle" fill="#57606a">log scale</text>')
    return parts, top + height + 40


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hookflow", action="append", default=[])
    ap.add_argument("--peers", action="append", default=[])
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--title", default="hookflow vs. n8n and Node-RED, 2-vCPU VM, 64 connections")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows = series(load_hookflow(a.hookflow), load_peers(a.peers), a.conns)
    w = 980
    parts = [f'<text x="20" y="28" font-size="17" font-weight="bold">{esc(a.title)}</text>']
    p1, y = panel(20, 60, w, rows, 1, "Throughput (higher is better)", "/s")
    parts += p1
    by_p99 = sorted(rows, key=lambda r: r[2])
    p2, y = panel(20, y + 20, w, by_p99, 2, "p99 latency (lower is better; for completed/s: webhook to sink)", "ms")
    parts += p2
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{y + 10}" '
           f'font-family="Helvetica, Arial, sans-serif"><rect width="100%" height="100%" fill="white"/>'
           + "".join(parts) + "</svg>\n")
    with open(a.out, "w") as f:
        f.write(svg)


if __name__ == "__main__":
    main()
