"""docs/BENCHMARKS.md from the results of ``make bench`` (``run.py``): pure functions of a dict.

Every section states its target next to the measured number and whether it is met; a part that
did not run says so instead of showing a stale number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cost
import sizing

IMPLEMENTATIONS = ("tradelake", "cryptofeed", "naive", "orjson_floor")
LABELS = {
    "tradelake": "tradelake (Feed + FirehoseSink packing)",
    "cryptofeed": "cryptofeed {version} Phemex handler",
    "naive": "naive (stdlib json, a record per trade)",
    "orjson_floor": "orjson parse-and-touch floor",
}
HOTPATH_TARGETS = {"live": 1.2, "snapshot": 1.0}
CALLS_PER_1000_TARGET = 2.0  # ≤ 1 PutRecordBatch per 500 trades
BILLED_RATIO_TARGET = 1.3
ROLLUP_TARGET_S = 10.0


def table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A GitHub Markdown table; the first ``left`` columns left-aligned, the others right."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * left + ["---:"] * (len(header) - left)) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def met(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def rate(per_s: float | None) -> str:
    if per_s is None:
        return "n/a"
    return f"{per_s / 1e6:.2f} M/s" if per_s >= 1e6 else f"{per_s / 1e3:.0f} k/s"


def machine(m: Mapping[str, Any]) -> str:
    return table(
        ["machine", ""],
        [
            ["CPU", f"{m['cpu']} ({m['cores']} cores)"],
            ["RAM", f"{m['ram_gib']:.1f} GiB"],
            ["Python", m["python"]],
            ["OS", m["os"]],
            ["load average at the start", " ".join(f"{x:.2f}" for x in m["load_average"])],
            ["run at", m["date"]],
        ],
        left=2,
    )


def hotpath_rows(h: Mapping[str, Any]) -> list[list[str]]:
    """One row per implementation: trades/s and × cryptofeed, live and snapshot side by side."""
    rows = []
    version = h.get("cryptofeed_version") or "2.4.1"
    for name in IMPLEMENTATIONS:
        row = [LABELS[name].format(version=version)]
        for workload in ("live", "snapshot"):
            w = h["workloads"][workload]
            ratio = w.get("ratio_to_cryptofeed", {}).get(name)
            row += [rate(w["results"].get(name)), "n/a" if ratio is None else f"{ratio:.2f}×"]
        rows.append(row)
    return rows


def hotpath(h: Mapping[str, Any] | None) -> str:
    if h is None:
        return "_Not run (`bench/hotpath.py` failed or is missing; see the `make bench` output)._"
    live, snap = h["workloads"]["live"], h["workloads"]["snapshot"]
    header = ["per-frame path", "live trades/s", "× cryptofeed", "snapshot trades/s", "× cf"]
    verdicts = []
    for name, w in (("live", live), ("snapshot", snap)):
        ratio = w.get("ratio_to_cryptofeed", {}).get("tradelake")
        target = HOTPATH_TARGETS[name]
        verdicts.append(
            f"- {name}: tradelake {'n/a' if ratio is None else f'{ratio:.2f}×'} cryptofeed, "
            f"target ≥ {target}× — {'n/a' if ratio is None else met(ratio >= target)}"
        )
    return "\n".join(
        [
            f"{live['trades']:,} trades in {live['messages']:,} messages (live-shaped) and "
            f"{snap['trades']:,} in {snap['messages']:,} (snapshot-heavy); median of "
            f"{h.get('repeat', '?')} interleaved runs, the same frames for every implementation "
            "(`bench/hotpath.py`; what each implementation does is in its docstring).",
            "",
            table(header, hotpath_rows(h)),
            "",
            *verdicts,
            "",
            *_hotpath_outputs(live, snap),
        ]
    )


def _hotpath_outputs(live: Mapping[str, Any], snap: Mapping[str, Any]) -> list[str]:
    """What each implementation produced for those trades/s: not the same work."""
    lines = []
    for name, w in (("live", live), ("snapshot", snap)):
        out = w.get("outputs", {})
        tl, cf = out.get("tradelake"), out.get("cryptofeed")
        if tl is None:
            continue
        line = (
            f"- {name}: tradelake wrote {tl['trades']:,} trades (exact decimals, de-duplicated) "
            f"into {tl['records']:,} Firehose records and declared {tl['gaps']} gaps"
        )
        if cf is not None:
            line += (
                f"; cryptofeed emitted {cf['trades']:,} Trade objects of the {w['trades']:,} "
                "rows (it drops USDT-perpetual `trades_p` rows, which still count in its "
                "trades/s), with no de-duplication and no record"
            )
        lines.append(line + ".")
    return lines


def compaction(c: Mapping[str, Any] | None) -> str:
    if c is None:
        return (
            "_HOOK: `bench/compaction.py --json OUT` did not produce results in this run (missing "
            "or failed); `make bench` renders them here once it does._"
        )
    w, lake, comp = c["workload"], c["lake"], c["compaction"]
    rows = [
        [
            name,
            f"{q['before_s']:.3f} s",
            f"{q['after_s']:.3f} s",
            f"{q['speedup']:.2f}×",
            "yes" if q["same_result"] else "**NO**",
        ]
        for name, q in c["queries"].items()
    ]
    return "\n".join(
        [
            f"{w['symbol']}, {w['hours']} market hours at {w['rate']:g} trades/s "
            f"({w['trades']:,} trades, {w['stored_duplicates']} stored duplicates from simulated "
            f"restarts), written with the capture's flush age ({w['flush_age_s']:g} s): "
            f"{lake['before']['files']:,} files ({lake['before']['bytes'] / 1e6:.1f} MB) → "
            f"{lake['after']['files']:,} ({lake['after']['bytes'] / 1e6:.1f} MB) after "
            f"compaction, which took {comp['seconds']:.1f} s and removed "
            f"{comp['duplicates_removed']} duplicates. Median of {c.get('repeat', '?')} runs "
            "(`bench/compaction.py`):",
            "",
            table(["query", "small files", "compacted", "speed-up", "same result"], rows),
        ]
    )


def _per_1000(t: Mapping[str, Any], key: str) -> float:
    return 1000 * float(t[key]) / float(t["trades"])


def firehose(f: Mapping[str, Any]) -> str:
    rows = []
    for w in f["workloads"]:
        p, b = w["packed"], w["per_trade"]
        calls, ratio = _per_1000(p, "calls"), p["billed_bytes"] / p["payload_bytes"]
        steady = w["name"].startswith("steady")
        verdict = (
            f"{met(calls <= CALLS_PER_1000_TARGET)} / {met(ratio <= BILLED_RATIO_TARGET)}"
            if steady
            else f"— / {met(ratio <= BILLED_RATIO_TARGET)}"
        )
        rows.append(
            [
                w["name"],
                f"{p['trades']:,}",
                f"{calls:.2f}",
                f"{_per_1000(b, 'calls'):.2f}",
                f"{_per_1000(p, 'records'):.2f}",
                f"{_per_1000(b, 'records'):.0f}",
                f"{ratio:.2f}×",
                f"{b['billed_bytes'] / b['payload_bytes']:.1f}×",
                f"{p['billed_bytes'] / p['trades']:.0f} B",
                verdict,
            ]
        )
    sweep = [
        [
            f"{w['max_age_s']:g} s",
            f"{_per_1000(w['packed'], 'calls'):.2f}",
            f"{w['packed']['billed_bytes'] / w['packed']['payload_bytes']:.2f}×",
            f"{w['packed']['trades'] / w['packed']['flushes']:.0f}",
            f"{cost.SECONDS_PER_MONTH / w['seconds'] * w['packed']['flushes']:,.0f}",
        ]
        for w in f["age_sweep"]
    ]
    age = f["workloads"][0]["max_age_s"]
    return "\n".join(
        [
            "The real `FirehoseSink` (as the ingest handler builds it: a flush when a full "
            f"record of 500 trades is 5 s old, at {f['max_trades']:,} trades, or when the oldest "
            f"trade is {age:g} s old) over a synthetic BTCUSD market in event time, against "
            "the same flushes sent as one record per trade (`bench/firehose_packing.py`). "
            f"Billing unit: {f['billing_unit']:,} bytes per record. Targets at a steady rate: "
            f"≤ {CALLS_PER_1000_TARGET:g} PutRecordBatch per 1,000 trades (one per 500), billed "
            f"≤ {BILLED_RATIO_TARGET}× payload.",
            "",
            table(
                [
                    "workload",
                    "trades",
                    "calls /1000",
                    "calls /1000, per-trade",
                    "records /1000",
                    "records /1000, per-trade",
                    "billed / payload",
                    "billed / payload, per-trade",
                    "billed a trade",
                    "targets (calls / bytes)",
                ],
                rows,
            ),
            "",
            "Every flush is one PutRecordBatch and one cursor checkpoint (an S3 PUT), so at a "
            "steady rate both follow when the sink flushes, not the packing: 500 trades to a "
            "record only helps once a flush holds that many, hence the full-record rule. Calls "
            "a little over 2 per 1,000 come from flushes that are not full: the last one of a "
            "run (every ingest step ends with one) and, in quiet minutes, one at the maximum "
            "age. The same 5 trades/s market with other maximum ages (the full-record rule "
            "always on):",
            "",
            table(
                ["flush age", "calls /1000", "billed / payload", "trades a flush", "flushes/month"],
                sweep,
            ),
            "",
            "Below `rate × age = 500` (2 trades/s at 120 s) the maximum age flushes first and "
            "the calls rise. The cost of a longer age: trades buffered in a Lambda that crashes "
            "are recovered only as far as the next subscribe's snapshot reaches back (200 "
            "trades on Phemex; beyond it they are a declared gap, never a silent loss); a step "
            "that ends normally flushes everything.",
        ]
    )


def loopback(e: Mapping[str, Any]) -> str:
    per_s = e["trades"] / e["seconds"]
    cpu_us = e["cpu_s"] / e["trades"] * 1e6
    return "\n".join(
        [
            f"`tradelake simulate` ({e['symbols']} symbols, offering ~{e['offered_per_s']:,.0f} "
            f"trades/s in its 20 ms frames) → `tradelake capture --replay` for "
            f"{e['seconds']:g} s → Parquet (`bench/loopback.py`):",
            "",
            table(
                ["trades in the lake", "trades/s", "capture CPU", "CPU a trade", "peak RSS"],
                [
                    [
                        f"{e['trades']:,}",
                        f"{per_s:,.0f}",
                        f"{e['cpu_s']:.2f} s",
                        f"{cpu_us:.1f} µs",
                        f"{e['max_rss_mib']:.0f} MiB",
                    ]
                ],
            ),
            "",
            f"The capture took {per_s / e['offered_per_s']:.0%} of what the simulator offered, "
            f"using {e['cpu_s'] / e['wall_s']:.0%} of a core (start-up and the imports of "
            f"pyarrow included): the simulator, not the capture, sets this rate. At "
            f"{cpu_us:.1f} µs a trade, one core would take ~{1e6 / cpu_us:,.0f} trades/s.",
        ]
    )


def rollup(r: Mapping[str, Any]) -> str:
    queries = r["partitions"] * 2
    return "\n".join(
        [
            f"`tradelake rollup` (DuckDB; `ohlcv_1m` and `ohlcv_1h` per symbol and hour) over "
            f"{r['trades']:,} trades: {r['symbols']} symbols × {r['hours']} hours = "
            f"{r['partitions']} hour partitions, {r['files']:,} Parquet files "
            f"({r['parquet_bytes'] / 1e6:.0f} MB, {r['parquet_bytes'] / r['trades']:.1f} bytes a "
            "trade) written by the real `ParquetSink`, a file per symbol and hour every 300 s "
            "(`bench/rollup_10m.py`):",
            "",
            table(
                ["wall time", "CPU time", "peak RSS", "cores", f"target ≤ {ROLLUP_TARGET_S:g} s"],
                [
                    [
                        f"{r['wall_s']:.1f} s",
                        f"{r['cpu_s']:.1f} s",
                        f"{r['max_rss_mib']:.0f} MiB",
                        str(r["cores"]),
                        met(r["wall_s"] <= ROLLUP_TARGET_S),
                    ]
                ],
            ),
            "",
            "`tradelake rollup` runs each rollup once per symbol and 6-hour batch "
            f"({r['partitions'] // 6:,} batches, {queries // 6:,} queries), not once per hour "
            f"partition ({queries:,} queries, as Athena does): a batch's partitions are read and "
            "de-duplicated once into a temporary table, both rollups run on it (the per-hour SQL "
            "without its hour predicate, `analytics.duckdb_rollup_sql`), and the bars are split "
            "by hour into the same files, byte for byte (tests/integration/test_rollup_batches.py; "
            "all 1,008 files of this lake were also compared once against the per-hour queries). "
            "Batches run two at a time, one single-threaded DuckDB connection each. Per hour "
            "partition, as before this issue, it took 33-42 s (47 s of CPU) here. Where the CPU "
            "goes now (one single-core profile): the rollups' window sorts (first and last trade "
            "of each bar, the SQL's `row_number()`s) ~9 s, reading the Parquet into the batch "
            "table ~3 s, writing the 1,008 files with fsync ~1.4 s.",
        ]
    )


def ingest(
    i: Mapping[str, Any], s: sizing.Sizing, template_mb: int | None, live_per_frame: float
) -> str:
    fh = i["firehose"]
    cpu = i["cpu_per_wall_s"]
    rows = [
        [
            "peak RSS (ru_maxrss, the whole invocation; the larger run)",
            f"{i['max_rss_mib']:.0f} MiB",
        ],
        ["cold start (imports, clients)", f"{i['cold_start_cpu_s']:.2f} CPU s"],
        [f"CPU at {i['calm_rate']:g} trades/s ({i['calm_s']:g} s)", f"{cpu['calm']:.4f} vCPU"],
    ]
    rows += [
        [
            f"CPU at the burst, {f['batch_ms']:g} ms batches: {f['burst_trades']:,} trades in "
            f"{f['burst_frames']:,} frames ({f['burst_trades'] / max(f['burst_frames'], 1):.1f} "
            "a frame)",
            f"{f['burst_cpu_s'] / i['seconds']:.3f} vCPU",
        ]
        for f in i["framings"]
    ]
    rows += [
        [
            "fitted: CPU a trade / a frame",
            f"{i['cpu_per_trade_s'] * 1e6:.1f} / {i['cpu_per_frame_s'] * 1e6:.1f} µs",
        ],
        [
            f"the burst in live-shaped frames ({live_per_frame:.1f} trades each)",
            f"**{s.burst_cpu_per_s:.3f} vCPU**",
        ],
        ["trades sent to Firehose (second run)", f"{fh['trades']:,} in {fh['calls']} calls"],
        ["cursor checkpoints (S3 PUTs)", str(i["s3_puts"])],
        ["log lines / bytes written", f"{i['log_lines']} / {i['log_bytes']:,}"],
    ]
    verdict = (
        ""
        if template_mb is None
        else (
            f"serverless.yml has {template_mb} MB: "
            + ("matches." if template_mb == s.chosen_mb else "**differs from this run's choice.**")
        )
    )
    lambda_usd = cost.PRICES["lambda_gb_s_arm64"] * cost.SECONDS_PER_MONTH / 1024
    return "\n".join(
        [
            "The REAL `functions/ingest/handler.py`, one invocation (cold start included) in a "
            "process of its own, against the bundled simulator in another: BTCUSD live, "
            f"{i['calm_s']:g} s at {i['calm_rate']:g} trades/s, then {i['rate']:,.0f} trades/s "
            f"for {i['seconds']:g} s; its real `FirehoseSink` with a client that records the "
            "calls, S3 and SSM in memory (`bench/ingest_burst.py`). Phemex sends a message per "
            "match; the simulator cannot publish 5,000 trades a second that finely on this "
            "machine, so the burst runs twice, in coarse and in fine batches, and the cost of a "
            "trade and of a frame fitted to the two predicts it in live-shaped frames (the hot "
            "path's live workload).",
            "",
            table(["", "measured"], rows),
            "",
            f"**Memory size: {s.chosen_mb} MB.** {s.reasoning()}. "
            f"At 24/7 on arm64 that is ${s.chosen_mb * lambda_usd:.2f} a month "
            f"(128 MB ${128 * lambda_usd:.2f}, 256 MB ${256 * lambda_usd:.2f}, 512 MB "
            f"${512 * lambda_usd:.2f}). {verdict}",
            "",
            smaller(i, s),
        ]
    )


def smaller(i: Mapping[str, Any], s: sizing.Sizing) -> str:
    """Why the next size down would not do (or that the smallest does)."""
    if s.chosen_mb <= sizing.SMALLEST_MB:
        return f"{sizing.SMALLEST_MB} MB, Lambda's smallest, holds both."
    below = s.chosen_mb - sizing.STEP_MB
    memory = below / (i["max_rss_mib"] + sizing.RUNTIME_ALLOWANCE_MIB)
    cpu = s.burst_cpu_per_s / (below / sizing.MB_PER_VCPU)
    return (
        f"Why not {below} MB: it holds the measured peak and the runtime with {memory:.2f}× "
        f"headroom (wanted: {sizing.MEMORY_HEADROOM}×), and the burst would use {cpu:.0%} of "
        f"its {below / sizing.MB_PER_VCPU:.3f} vCPU (wanted: at most "
        f"{1 / sizing.CPU_HEADROOM:.0%}; this machine's cores are not Graviton's). A function "
        "short of CPU falls behind the stream; one short of memory is killed mid-step (the "
        "workflow recovers from the checkpoint, trades since the last flush come again from "
        "the snapshot or are a declared gap). At the calm rate it is idle "
        f"({i['cpu_per_wall_s']['calm']:.4f} vCPU)."
    )


def quantity(value: float, unit: str) -> str:
    if not unit:
        return ""
    number = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return f"{number} {unit}"


def cost_section(
    lines: Sequence[cost.Line],
    stack: cost.StackSettings,
    levers: Sequence[tuple[str, tuple[float, float]]],
) -> str:
    rows = [
        [
            line.service,
            line.item,
            quantity(line.quantity, line.unit),
            f"{line.price:.6g}" if line.price_key else "",
            f"${line.list_usd:,.2f}",
            line.basis,
        ]
        for line in lines
    ]
    list_usd, free_usd = cost.totals(lines)
    rows.append(["**total**", "list price, no free tier", "", "", f"**${list_usd:,.2f}**", ""])
    rows.append(
        [
            "**total**",
            "with the always-free tiers",
            "",
            "",
            f"**${free_usd:,.2f}**",
            ", ".join(f"{k} {v:,g}" for k, v in cost.FREE.items()),
        ]
    )
    goal = 10.0
    return "\n".join(
        [
            f"BTCUSD captured 24/7 in eu-west-1 at an assumed {cost.TRADES_PER_SECOND:g} "
            f"trades/s ({cost.TRADES_PER_SECOND * cost.SECONDS_PER_MONTH / 1e6:.1f} M trades a "
            f"month; `bench/cost.py` says why), {cost.HOURS_PER_MONTH} hours a month, list "
            f"prices as of {cost.PRICES_AS_OF}. Quantities come from the packaged template "
            "(`make package`), from the measurements above, or from the named assumptions in "
            "`bench/cost.py`. Custom metrics: "
            f"{cost.CUSTOM_METRICS} (`cost.CUSTOM_METRICS`).",
            "",
            table(["service", "item", "quantity", "USD/unit", "month", "basis"], rows, left=2),
            "",
            f"Goal: under ${goal:g} a month — list price {met(list_usd < goal)} "
            f"(${list_usd:.2f}), with the always-free tiers {met(free_usd < goal)} "
            f"(${free_usd:.2f}). Template: ingest {stack.functions['ingest'].memory_mb} MB, "
            f"{stack.alarm_metrics} alarm metrics, {stack.dashboards} dashboard(s), Firehose "
            f"buffer {stack.firehose_interval_s} s, logs kept "
            f"{max(stack.log_retention_days, default=0)} days.",
            *(
                [
                    "",
                    "The same month with the ingest function at the smaller sizes section 6 "
                    "rules out (its memory is most of the bill):",
                    "",
                    table(
                        ["", "list price", "always-free tiers"],
                        [[name, f"${a:.2f}", f"${b:.2f}"] for name, (a, b) in levers],
                    ),
                ]
                if len(levers) > 1  # "as measured" alone: already Lambda's smallest
                else []
            ),
        ]
    )


def document(results: Mapping[str, Any]) -> str:
    """The whole of docs/BENCHMARKS.md."""
    parts = [
        "# Benchmarks",
        "",
        "GENERATED by `make bench` (`bench/run.py`); do not edit by hand. Issue 10's "
        "measurements, each next to its target, on the machine below. Numbers from a shared "
        "machine are noisy: ratios measured in one run are what to compare.",
        "",
        machine(results["machine"]),
        "",
        "## 1. The hot path, side by side",
        "",
        hotpath(results.get("hotpath")),
        "",
        "## 2. Firehose requests and billed bytes per 1,000 trades",
        "",
        firehose(results["firehose"]),
        "",
        "## 3. End to end over loopback",
        "",
        loopback(results["loopback"]),
        "",
        "## 4. A DuckDB rollup of 10 M trades",
        "",
        rollup(results["rollup"]),
        "",
        "## 5. Small files: query time before and after compaction",
        "",
        compaction(results.get("compaction")),
        "",
        "## 6. The ingest handler under a burst, and its memory size",
        "",
        ingest(
            results["ingest"],
            results["sizing"],
            results["cost"]["stack"].functions["ingest"].memory_mb,
            results["live_trades_per_frame"],
        ),
        "",
        "## 7. Monthly cost",
        "",
        cost_section(results["cost"]["lines"], results["cost"]["stack"], results["cost"]["levers"]),
        "",
    ]
    return "\n".join(parts)


def console(results: Mapping[str, Any]) -> str:
    """What ``make bench`` prints: the side-by-side table and the verdicts."""
    out = []
    h = results.get("hotpath")
    if h is not None:
        header = ["per-frame path", "live", "× cf", "snapshot", "× cf"]
        rows = hotpath_rows(h)
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            out.append(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
    else:
        out.append("hot path: not run")
    lines = results["cost"]["lines"]
    list_usd, free_usd = cost.totals(lines)
    out.append(
        f"ingest memory: {results['sizing'].chosen_mb} MB; cost a month: ${list_usd:.2f} "
        f"(list), ${free_usd:.2f} (always-free tiers)"
    )
    return "\n".join(out)
