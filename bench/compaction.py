"""Query time over the local lake before and after ``tradelake compact`` (small files merged).

The lake is what ``tradelake capture`` writes for one symbol over ``--hours`` (default a day):
``market.market`` at ``--rate`` trades a second, one message per nanosecond of fills, received
50 ms after the trade, fed to the real ``ParquetSink`` with the capture's flush age
(``cli.LOCAL_FLUSH_AGE_S``, 30 s), so each hour holds one file per flush. Every
``--restart-hours`` the capture "crashes" between publishing a file and saving its cursor, and
the restart writes that flush again (stored duplicates, as in real life).

The lake is copied and the copy compacted (``parquet_compaction.compact_lake``, what ``tradelake
compact`` runs). Each query then runs ``--repeat`` times on each lake, on a fresh
``duckdb_lake.connect`` (globbing the lake is part of every query's cost), the two lakes in turn
so that a busy machine slows both alike, after one untimed round; the median is reported, and the
results must be equal. Writes JSON with ``--json OUT`` (schema:
docs/BENCHMARKS.md, "Small files").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from market import market

from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.parquet_compaction import DEFAULT_GRACE_S, compact_lake
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.analytics import duckdb_sql, hour_params
from tradelake.cli import LOCAL_FLUSH_AGE_S
from tradelake.model import INCREMENTAL, SNAPSHOT, Trade, trade_key
from tradelake.partitions import NS_PER_HOUR

SYMBOL = "BTCUSD"
START = datetime(2026, 11, 27, tzinfo=UTC)
LATENCY_NS = 50_000_000
NS_PER_SECOND = 10**9


def capture_trades(hours: int, rate: float) -> list[list[Trade]]:
    """The trades of the market as the capture receives them: one message per nanosecond."""
    start_ns = int(START.timestamp()) * NS_PER_SECOND
    seen: Counter[tuple[int, str, int, int]] = Counter()
    messages: list[list[Trade]] = []
    for fill in market(SYMBOL, start_ns, hours * 3600, rate):
        fill_id = (fill.ts_ns, fill.side, fill.price, fill.qty)
        trade = Trade(SYMBOL, *fill_id, seen[fill_id], fill.ts_ns + LATENCY_NS, 0, INCREMENTAL)
        seen[fill_id] += 1
        if not messages or messages[-1][0].ts_ns != fill.ts_ns:
            messages.append([])
        messages[-1].append(trade._replace(seq=len(messages)))
    return messages


def write_lake(lake: Path, messages: list[list[Trade]], restart_hours: float) -> int:
    """Write ``messages`` through ``ParquetSink`` as the capture would; the duplicates stored."""
    now = [0]
    sink = ParquetSink(lake, max_age_s=LOCAL_FLUSH_AGE_S, clock=lambda: now[0])
    restart_ns = int(restart_hours * NS_PER_HOUR)
    next_restart = messages[0][0].recv_ns + restart_ns
    duplicates = 0
    for message in messages:
        now[0] = message[0].recv_ns
        sink.add(message)
        if sink.due(now[0]):
            flushed = sink.flush()
            if now[0] >= next_restart:  # published, then a crash before the cursor was saved
                next_restart += restart_ns
                sink.add([t._replace(recv_ns=now[0] + 10**9, source=SNAPSHOT) for t in flushed])
                duplicates += len(sink.flush())
    sink.flush()
    return duplicates


def lake_size(lake: Path) -> dict[str, int]:
    files = list(lake.rglob("*.parquet"))
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def queries(hours: int, lookup: Trade) -> dict[str, Callable[[duckdb.DuckDBPyConnection], Any]]:
    """The measured queries: what each runs on a connection, returning comparable results."""
    day = [START + timedelta(hours=h) for h in range(hours)]
    rollup = [duckdb_sql("ohlcv_1m", **hour_params(SYMBOL, hour)) for hour in day]
    point = (
        f"SELECT * FROM trades WHERE ts_ns = {lookup.ts_ns} AND trade_key = '{trade_key(lookup)}'"
    )
    return {
        "count": lambda con: con.sql("SELECT count(*) FROM trades").fetchall(),
        "ohlcv_1m_day": lambda con: [con.sql(sql).fetchall() for sql in rollup],
        "point_lookup": lambda con: con.sql(point).fetchall(),
    }


def timed(lake: Path, run: Callable[[duckdb.DuckDBPyConnection], Any]) -> tuple[float, Any]:
    """Seconds and result of ``run`` on a fresh connection (globbing the lake included)."""
    started = time.perf_counter()
    result = run(connect(lake))
    return time.perf_counter() - started, result


def bench(root: Path, hours: int, rate: float, restart_hours: float, repeat: int) -> dict[str, Any]:
    small, compacted = root / "small-files", root / "compacted"
    print(f"writing {hours} h of {SYMBOL} at ~{rate:g} trades/s into {small}/", file=sys.stderr)
    messages = capture_trades(hours, rate)
    trades = sum(map(len, messages))
    duplicates = write_lake(small, messages, restart_hours)
    shutil.copytree(small, compacted)
    started = time.perf_counter()
    market_over = int((START + timedelta(hours=hours)).timestamp()) * NS_PER_SECOND
    done, _ = compact_lake(compacted, market_over + DEFAULT_GRACE_S * NS_PER_SECOND)
    compaction_s = time.perf_counter() - started
    print(f"compacted a copy in {compaction_s:.2f} s; timing queries", file=sys.stderr)

    work = queries(hours, messages[len(messages) // 2][0])
    lakes = {"before": small, "after": compacted}
    runs: dict[str, dict[str, list[float]]] = {name: {"before": [], "after": []} for name in work}
    results: dict[str, dict[str, Any]] = {name: {} for name in work}
    for round_ in range(repeat + 1):  # round 0 warms the OS cache and is not counted
        for name, run in work.items():
            for when, lake in lakes.items():  # interleaved: a busy machine slows both alike
                seconds, results[name][when] = timed(lake, run)
                if round_:
                    runs[name][when].append(seconds)
    medians = {n: {w: statistics.median(r[w]) for w in lakes} for n, r in runs.items()}

    return {
        "machine": {
            "cores": os.cpu_count(),
            "python": sys.version.split()[0],
            "duckdb": duckdb.__version__,
            "pyarrow": pa.__version__,
        },
        "workload": {
            "symbol": SYMBOL,
            "hours": hours,
            "rate": rate,
            "trades": trades,
            "flush_age_s": LOCAL_FLUSH_AGE_S,
            "restart_hours": restart_hours,
            "stored_duplicates": duplicates,
        },
        "lake": {when: lake_size(lake) for when, lake in lakes.items()},
        "compaction": {
            "seconds": round(compaction_s, 4),
            "partitions": len(done),
            "rows_kept": sum(c.rows_after for c in done),
            "duplicates_removed": sum(c.duplicates for c in done),
        },
        "queries": {
            name: {
                "before_s": round(medians[name]["before"], 5),
                "after_s": round(medians[name]["after"], 5),
                "speedup": round(medians[name]["before"] / medians[name]["after"], 2),
                "same_result": results[name]["before"] == results[name]["after"],
                "runs_before_s": [round(s, 5) for s in runs[name]["before"]],
                "runs_after_s": [round(s, 5) for s in runs[name]["after"]],
            }
            for name in work
        },
        "repeat": repeat,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hours", type=int, default=24, help="market hours (default 24)")
    p.add_argument("--rate", type=float, default=5.0, help="trades a second (default 5)")
    p.add_argument("--restart-hours", type=float, default=6.0, help="a crash every (default 6)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per query (default 5)")
    p.add_argument("--lake", type=Path, help="where to build both (default: a temporary directory)")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    args = p.parse_args()
    if args.hours < 1 or args.rate <= 0 or args.repeat < 1 or args.restart_hours <= 0:
        p.error("--hours, --rate, --repeat and --restart-hours must be positive")
    temporary = args.lake is None
    lake = Path(tempfile.mkdtemp(prefix="tradelake-compaction-")) if temporary else args.lake
    if not temporary and lake.exists():
        p.error(f"{lake} exists: give --lake a new directory")
    try:
        result = bench(lake, args.hours, args.rate, args.restart_hours, args.repeat)
    finally:
        if temporary:
            shutil.rmtree(lake, ignore_errors=True)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if all(q["same_result"] for q in result["queries"].values()) else 1


def render(result: dict[str, Any]) -> str:
    """The results as a small table."""
    w, lake, c = result["workload"], result["lake"], result["compaction"]
    lines = [
        f"{w['hours']} h of {w['symbol']}, {w['trades']:,} trades"
        f" ({w['stored_duplicates']:,} stored twice), a file per hour per {w['flush_age_s']:g} s",
        f"files {lake['before']['files']:,} -> {lake['after']['files']:,}, bytes"
        f" {lake['before']['bytes']:,} -> {lake['after']['bytes']:,};"
        f" compaction {c['seconds']:.2f} s, {c['duplicates_removed']:,} duplicates removed",
        f"{'query':<14}{'before s':>10}{'after s':>10}{'speedup':>9}  same result",
    ]
    lines += [
        f"{name:<14}{q['before_s']:>10.4f}{q['after_s']:>10.4f}{q['speedup']:>8.1f}x"
        f"  {q['same_result']}"
        for name, q in result["queries"].items()
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
