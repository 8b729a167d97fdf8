#!/usr/bin/env python3
"""Turns one scripts/bench.sh results dir into results.json, results.md and results.png.

Usage: report.py RESULTS_DIR

Reads meta.json, runs.jsonl (one line per workload and broker) and the raw tool outputs
named there: Kafka's ProducerPerformance / ConsumerPerformance text and the loadgen's JSON.
Ratios are Millrace / Kafka from the same run (for latency and RSS lower is better).
A cluster run (meta "nodes" > 1) sums CPU and peak RSS over the nodes and has no targets
(those are the single-node goals).
"""
import json
import os
import re
import sys
from statistics import median

BROKERS = ("kafka", "millrace")

PERF_PRODUCE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th"
)


def parse_raw(run, d):
    path = os.path.join(d, run["raw"])
    try:
        text = open(path).read()
    except OSError:
        return None
    if run["rc"] != 0:
        return None
    if run["tool"] == "producer-perf":
        m = None
        for m in PERF_PRODUCE.finditer(text):
            pass
        if not m:
            return None
        return {
            "records": int(m.group(1)),
            "msgs_per_s": float(m.group(2)),
            "mb_per_s": float(m.group(3)),
            "ack_latency_ms": {
                "avg": float(m.group(4)),
                "max": float(m.group(5)),
                "p50": float(m.group(6)),
                "p95": float(m.group(7)),
                "p99": float(m.group(8)),
                "p999": float(m.group(9)),
            },
        }
    if run["tool"] == "consumer-perf":
        lines = [l for l in text.splitlines() if l.strip()]
        hdr = next((i for i, l in enumerate(lines) if l.startswith("start.time")), None)
        if hdr is None or hdr + 1 >= len(lines):
            return None
        keys = [k.strip() for k in lines[hdr].split(",")]
        vals = [v.strip() for v in lines[hdr + 1].split(",")]
        row = dict(zip(keys, vals))
        # fetch.* excludes the consumer group join (rebalance.time.ms).
        return {
            "records": int(float(row["data.consumed.in.nMsg"])),
            "msgs_per_s": float(row["fetch.nMsg.sec"]),
            "mb_per_s": float(row["fetch.MB.sec"]),
            "rebalance_ms": float(row["rebalance.time.ms"]),
            "fetch_ms": float(row["fetch.time.ms"]),
        }
    if run["tool"] == "txn-scenarios":
        # compat-tests/txn/TxnScenarios.java's bench: 100-byte records, 100 a transaction.
        line = next((l for l in reversed(text.splitlines()) if l.startswith("@@ {")), None)
        if line is None:
            return None
        j = json.loads(line[3:])
        return {
            "records": j["records"],
            "msgs_per_s": float(j["records_per_sec"]),
            "mb_per_s": j["records_per_sec"] * 100 / 1e6,
            "txns_per_s": j["txns_per_sec"],
        }
    if run["tool"] == "loadgen":
        try:
            j = json.loads(text.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None
        if j["mode"] == "consume":
            return j["consume"]
        r = dict(j["produce"])
        if "latency_ms" in j:
            r["e2e_latency_ms"] = j["latency_ms"]
        return r
    return None


def ratio(m, k):
    if m is None or k in (None, 0):
        return None
    return m / k


def fmt(v, digits=1):
    if v is None:
        return "—"
    if isinstance(v, float) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def main():
    d = sys.argv[1]
    meta = json.load(open(os.path.join(d, "meta.json")))
    runs = [json.loads(l) for l in open(os.path.join(d, "runs.jsonl")) if l.strip()]
    fixed_rate = None
    try:
        fixed_rate = int(open(os.path.join(d, "fixed_rate.txt")).read().strip())
    except (OSError, ValueError):
        pass

    workloads = []  # in run order
    by = {}  # (broker, workload) -> runs, one per round
    for r in runs:
        r.setdefault("round", 1)
        r["result"] = parse_raw(r, d)
        by.setdefault((r["broker"], r["workload"]), []).append(r)
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    rounds = sorted({r["round"] for r in runs})
    nodes = meta.get("nodes", 1)
    fixed_name = next((w for w in workloads if w.startswith("lg-e2e-fixed")), None)

    def dig(v, path):
        for p in path:
            if not isinstance(v, dict):
                return None
            v = v.get(p)
        return v

    def res(b, w, *path):
        """Median over the rounds with a result (a dict: median per key)."""
        vals = [dig(r.get("result"), path) for r in by.get((b, w), [])]
        vals = [v for v in vals if v is not None]
        if not vals:
            return None
        if isinstance(vals[0], dict):
            return {k: median([v[k] for v in vals if v.get(k) is not None]) for k in vals[0]}
        return median(vals)

    def field(b, w, key, agg):
        vals = [r.get(key) for r in by.get((b, w), []) if r.get(key) is not None]
        return agg(vals) if vals else None

    def per_round_ratio(w, *path):
        out = []
        for rnd in rounds:
            k = next((r for r in by.get(("kafka", w), []) if r["round"] == rnd), None)
            m = next((r for r in by.get(("millrace", w), []) if r["round"] == rnd), None)
            out.append(ratio(dig(m and m.get("result"), path), dig(k and k.get("result"), path)))
        return out

    rows = []
    for w in workloads:
        row = {"workload": w, "tool": (by.get(("kafka", w)) or by.get(("millrace", w)))[0]["tool"]}
        for b in BROKERS:
            rs = by.get((b, w), [])
            row[b] = {
                "ok": bool(rs) and all(r.get("result") for r in rs),
                "rounds": len(rs),
                "msgs_per_s": res(b, w, "msgs_per_s"),
                "mb_per_s": res(b, w, "mb_per_s"),
                "cpu_s": field(b, w, "cpu_s", median),
                "client_cpu_s": field(b, w, "client_cpu_s", median),
                "loadavg_before": field(b, w, "loadavg_before", median),
                "wall_s": field(b, w, "wall_s", median),
                "rss_peak_mib": (field(b, w, "rss_peak_kb", max) or 0) / 1024,
                "cold_cache": field(b, w, "cold_cache", all),
                "ack_latency_ms": res(b, w, "ack_latency_ms"),
                "e2e_latency_ms": res(b, w, "e2e_latency_ms"),
                "per_round": [r.get("result") for r in rs],
            }
        row["throughput_ratio"] = ratio(row["millrace"]["msgs_per_s"], row["kafka"]["msgs_per_s"])
        row["throughput_ratio_per_round"] = per_round_ratio(w, "msgs_per_s")
        row["e2e_p99_ratio_per_round"] = per_round_ratio(w, "e2e_latency_ms", "p99")
        row["cpu_ratio"] = ratio(row["millrace"]["cpu_s"], row["kafka"]["cpu_s"])
        row["rss_ratio"] = ratio(row["millrace"]["rss_peak_mib"], row["kafka"]["rss_peak_mib"])
        rows.append(row)

    peak = {b: max((r[b]["rss_peak_mib"] for r in rows), default=0) for b in BROKERS}
    cpu = {b: sum((r[b]["cpu_s"] or 0) for r in rows) for b in BROKERS}

    def thr_ratio(w):
        row = next((r for r in rows if r["workload"] == w), None)
        return row and row["throughput_ratio"]

    def p99_ratio(w):
        m = res("millrace", w, "e2e_latency_ms", "p99")
        k = res("kafka", w, "e2e_latency_ms", "p99")
        return ratio(m, k)

    targets = [
        ("produce 1 KiB, acks=1, 8 partitions (ProducerPerformance)",
         thr_ratio("perf-produce-p8-acks1-none"), ">= 1.5", lambda r: r >= 1.5),
        ("produce 1 KiB, acks=1, 8 partitions (loadgen)",
         thr_ratio("lg-produce-p8-acks1-none"), ">= 1.5", lambda r: r >= 1.5),
        ("consume from start (ConsumerPerformance)",
         thr_ratio("perf-consume-p8"), ">= 1.0", lambda r: r >= 1.0),
        ("consume from start (loadgen)", thr_ratio("lg-consume-p8"), ">= 1.0", lambda r: r >= 1.0),
        ("p99 end-to-end latency at the fixed rate",
         p99_ratio("lg-e2e-fixed-p8"), "<= 0.5", lambda r: r <= 0.5),
        ("peak RSS over the run", ratio(peak["millrace"], peak["kafka"]), "<= 0.25",
         lambda r: r <= 0.25),
    ]
    target_rows = [
        {"target": t, "ratio": r, "goal": g, "met": (None if r is None else bool(ok(r)))}
        for t, r, g, ok in targets
    ]

    if nodes > 1:
        target_rows = []
    report = {
        "meta": meta,
        "fixed_rate_msgs_per_s": fixed_rate,
        "workloads": rows,
        "peak_rss_mib": peak,
        "cpu_s_total_median_per_workload": cpu,
        "rounds": len(rounds),
        "targets": target_rows,
    }
    json.dump(report, open(os.path.join(d, "results.json"), "w"), indent=2)

    md = []
    kafka_version = meta["kafka"].split()[0]
    what = f"{nodes}-node cluster, " if nodes > 1 else ""
    md.append(f"## Millrace vs Apache Kafka {kafka_version} — {what}{meta['mode']} run, {meta['date_utc']}\n")
    if nodes > 1:
        setup = (
            f"Loopback, one {nodes}-node cluster at a time (every node broker+controller, all on "
            "this machine), replication factor 3, min.insync.replicas=2, every produce acks=all, "
            "default flush policy on both (no fsync per message). 1 KiB records."
        )
    else:
        setup = (
            "Loopback, one broker at a time, default flush policy on both (no fsync per "
            "message). 1 KiB records."
        )
    md.append(
        f"Machine: {meta['cpu']}, {meta['cores']} cores, {meta['mem_gib']} GiB, Linux {meta['kernel']}. "
        f"Millrace {meta['millrace_rev']} ({meta['millrace_build']} build); Kafka {meta['kafka']}; "
        f"{meta['jdk']}; librdkafka {meta['librdkafka']}. {setup}\n"
    )
    md.append(
        f"Rounds: {len(rounds)} (each restarts both brokers with empty data dirs); figures are "
        "medians over the rounds, peak RSS the maximum.\n"
    )
    md.append("### Throughput (Millrace / Kafka: higher is better)\n")
    md.append("| workload | client | Kafka msgs/s | Kafka MB/s | Millrace msgs/s | Millrace MB/s | ratio | ratio per round |")
    md.append("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        k, m = r["kafka"], r["millrace"]
        md.append(
            f"| {r['workload']} | {r['tool']} | {fmt(k['msgs_per_s'])} | {fmt(k['mb_per_s'])} | "
            f"{fmt(m['msgs_per_s'])} | {fmt(m['mb_per_s'])} | {fmt_ratio(r['throughput_ratio'])} | "
            f"{', '.join(fmt_ratio(x) for x in r['throughput_ratio_per_round'])} |"
        )
    md.append("")
    md.append("### Latency, ms (Millrace / Kafka: lower is better)\n")
    md.append("| workload | measure | Kafka p50 / p99 / p99.9 / max | Millrace p50 / p99 / p99.9 / max | p99 ratio | p99 ratio per round |")
    md.append("|---|---|---|---|---:|---|")
    for r in rows:
        for key, label in (("e2e_latency_ms", "end-to-end"), ("ack_latency_ms", "send→ack")):
            k, m = r["kafka"][key], r["millrace"][key]
            if not k and not m:
                continue

            def q(x):
                if not x:
                    return "—"
                return " / ".join(fmt(float(x[p]), 2 if float(x[p]) < 10 else 1)
                                  for p in ("p50", "p99", "p999", "max"))

            per_round = per_round_ratio(r["workload"], key, "p99")
            md.append(
                f"| {r['workload']} | {label} | {q(k)} | {q(m)} | "
                f"{fmt_ratio(ratio(m and m['p99'], k and k['p99']))} | "
                f"{', '.join(fmt_ratio(x) for x in per_round)} |"
            )
    if fixed_rate:
        acks = "acks=all" if nodes > 1 else "acks=1"
        md.append(f"\nFixed rate: {fixed_rate:,} msgs/s (half of Kafka's loadgen p8 {acks} maximum in this run).")
    md.append("")
    md.append("### Resources per workload\n")
    if nodes > 1:
        md.append(f"Summed over the {nodes} nodes of each cluster.")
    md.append(
        "Broker peak RSS (MiB, VmHWM reset before each workload) and broker CPU seconds "
        "(utime+stime), medians over the rounds; client CPU seconds of the benchmark client itself (it shares the "
        "same cores); 1-minute load average before the workload (other jobs on the machine "
        "show up here).\n"
    )
    md.append("| workload | Kafka RSS | Kafka CPU | client CPU | load | Millrace RSS | Millrace CPU | client CPU | load | broker CPU ratio |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        k, m = r["kafka"], r["millrace"]
        md.append(
            f"| {r['workload']} | {fmt(k['rss_peak_mib'], 0)} | {fmt(k['cpu_s'])} | "
            f"{fmt(k['client_cpu_s'])} | {fmt(k['loadavg_before'])} | "
            f"{fmt(m['rss_peak_mib'], 0)} | {fmt(m['cpu_s'])} | "
            f"{fmt(m['client_cpu_s'])} | {fmt(m['loadavg_before'])} | {fmt_ratio(r['cpu_ratio'])} |"
        )
    md.append(
        f"| **whole run** | **{peak['kafka']:.0f}** | **{cpu['kafka']:.1f}** | | | "
        f"**{peak['millrace']:.0f}** | **{cpu['millrace']:.1f}** | | | {fmt_ratio(ratio(cpu['millrace'], cpu['kafka']))} |"
    )
    if target_rows:
        md.append("")
        md.append("### Targets\n")
        md.append("| target | Millrace / Kafka | goal | met |")
        md.append("|---|---:|---|---|")
        for t in target_rows:
            met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
            md.append(f"| {t['target']} | {fmt_ratio(t['ratio'])} | {t['goal']} | {met} |")
    failed = [r["workload"] + "/" + b for r in rows for b in BROKERS if not r[b]["ok"]]
    if failed:
        md.append(f"\nRuns without a result (see the raw outputs): {', '.join(failed)}")
    lost = [f"{r['workload']}/{r['broker']} round {r['round']} ({r['nodes_alive']} of {nodes})"
            for r in runs if r.get("nodes_alive", nodes) < nodes]
    if lost:
        md.append(f"\nNodes no longer running after: {', '.join(lost)}")
    md.append("")
    text = "\n".join(md)
    open(os.path.join(d, "results.md"), "w").write(text)
    print(text)

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no results.png; run scripts/install-deps.sh)", file=sys.stderr)
        return
    chart(d, rows, peak, fixed_rate, fixed_name, nodes, plt)


def chart(d, rows, peak, fixed_rate, fixed_name, nodes, plt):
    colors = {"kafka": "#4c72b0", "millrace": "#dd8452"}
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5), gridspec_kw={"width_ratios": [2.2, 1.2, 1]})
    # Throughput.
    ax = axes[0]
    thr = [r for r in rows if r["kafka"]["mb_per_s"] or r["millrace"]["mb_per_s"]]
    thr = [r for r in thr if "fixed" not in r["workload"]]
    xs = range(len(thr))
    w = 0.4
    for i, b in enumerate(("kafka", "millrace")):
        vals = [r[b]["mb_per_s"] or 0 for r in thr]
        bars = ax.bar([x + (i - 0.5) * w for x in xs], vals, w, label=b.capitalize(), color=colors[b])
        for bar, v in zip(bars, vals):
            ax.annotate(f"{v:.0f}", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                        va="bottom", fontsize=7)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r["workload"].replace("-", "\n") for r in thr], fontsize=7)
    ax.set_ylabel("MB/s (1 KiB records)")
    ax.set_title("Throughput (higher is better)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    # Latency at the fixed rate.
    ax = axes[1]
    fixed = next((r for r in rows if r["workload"] == fixed_name), None)
    qs = ("p50", "p99", "p999", "max")
    if fixed:
        for i, b in enumerate(("kafka", "millrace")):
            lat = fixed[b]["e2e_latency_ms"] or {}
            vals = [lat.get(q) or 0 for q in qs]
            bars = ax.bar([x + (i - 0.5) * w for x in range(len(qs))], vals, w,
                          label=b.capitalize(), color=colors[b])
            for bar, v in zip(bars, vals):
                ax.annotate(f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=7)
        ax.set_yscale("log")
    ax.set_xticks(range(len(qs)))
    ax.set_xticklabels(["p50", "p99", "p99.9", "max"])
    ax.set_ylabel("end-to-end latency, ms (log)")
    rate = f" at {fixed_rate:,} msgs/s" if fixed_rate else ""
    ax.set_title(f"Latency{rate}\n(lower is better)", fontsize=10)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    # Peak RSS.
    ax = axes[2]
    vals = [peak["kafka"], peak["millrace"]]
    bars = ax.bar(["Kafka", "Millrace"], vals, color=[colors["kafka"], colors["millrace"]])
    for bar, v in zip(bars, vals):
        ax.annotate(f"{v:.0f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom")
    ax.set_ylabel("MiB")
    summed = f", sum of {nodes} nodes" if nodes > 1 else ""
    ax.set_title(f"Broker peak RSS{summed} (lower is better)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(d, "results.png"), dpi=90)


if __name__ == "__main__":
    main()
