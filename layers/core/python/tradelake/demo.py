"""``tradelake demo``: the whole local pipeline, offline, proved complete in under a minute.

simulator (three market types, every fault switched on, hours of market time compressed into
seconds) → the real capture loop over real websockets → the local Parquet lake → DuckDB. The
closing table compares the lake with the simulator's own tape: captured, duplicates dropped,
gaps declared, and missing outside gaps, which must be 0. Then the hour partitions are compacted
(``tradelake compact``) and the lake checked again, and the OHLCV rollups are written.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import duckdb

from tradelake.adapters import websocket_source
from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.duckdb_rollup import rollup_lake
from tradelake.adapters.lake_files import FileCursorStore, JsonlGapLedger, read_gaps
from tradelake.adapters.parquet_compaction import compact_lake
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.analytics import ROLLUPS
from tradelake.capture import Capture, CaptureConfig
from tradelake.feed import CaptureStats, FeedConfig
from tradelake.model import LATEST_NS
from tradelake.report import REPORT_NAME, describe, write_report
from tradelake.simulator import Faults, Simulator, SimulatorConfig, SimulatorStats, synthetic_tape
from tradelake.verify import SymbolCheck, check

SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT", "s1INCHUSDT")
MARKET_START = datetime(2026, 11, 27, tzinfo=UTC)
TRADES_PER_WALL_SECOND = 700
"""Per symbol. A reconnect takes ~0.1 s, so a 200-trade snapshot covers it with room to spare;
a stall (dead after 1.5 s of silence) does not, and must be declared as a gap."""

GAP_REASONS = {
    "no_cursor": "the lake's start",
    "snapshot_short": "more trades while away than a 200-trade snapshot holds",
    "snapshot_missing": "no usable snapshot after every try",
    "out_of_order": "a trade older than the position",
}

BARS_QUERY = """
SELECT symbol, hour, open, high, low, close, volume, trade_count
FROM ohlcv_1h ORDER BY symbol, hour
"""


@dataclass(frozen=True)
class DemoResult:
    checks: list[SymbolCheck]
    """Every read de-duplicates by trade_key: these compare what a reader sees with the tape."""
    stored: dict[str, int]
    """Rows stored per symbol, duplicates included (a crash between publish and cursor save)."""
    gap_reasons: dict[str, int]
    capture: CaptureStats
    simulator: SimulatorStats

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.checks)


def run_demo(
    lake: Path, hours: float = 4.0, seconds: float = 25.0, seed: int = 7, out: TextIO = sys.stdout
) -> DemoResult:
    """Run the demo into a fresh ``lake`` and print the proof; see the module docstring."""
    shutil.rmtree(lake, ignore_errors=True)
    start_ns = int(MARKET_START.timestamp()) * 10**9
    rate = TRADES_PER_WALL_SECOND * seconds / (hours * 3600)
    tape = synthetic_tape(SYMBOLS, start_ns, int(hours * 3600 * 10**9), seed=seed, rate=rate)
    faults = Faults(
        drop_every=seconds / 6,
        close_every=seconds / 5,
        stall_every=seconds / 2,
        stall_seconds=2.5,
        malformed_rate=0.02,
        error_rate=0.1,  # five refusals in a row (fatal) then have odds of 1e-5
        unknown_keys=True,
        late_snapshot_rate=0.2,
        lost_snapshot_rate=0.1,
        bad_snapshot_rate=0.1,
        seed=seed,
    )
    config = SimulatorConfig(compression=hours * 3600 / seconds, faults=faults)
    print(
        f"tradelake demo: {hours:g} market hours of {', '.join(SYMBOLS)} "
        f"({sum(map(len, tape.values())):,} trades) in ~{seconds:g} s, every fault switched on",
        file=out,
        flush=True,
    )
    started = time.monotonic()
    with Simulator(tape, config) as sim:
        capture = Capture(
            CaptureConfig(
                url=sim.url,
                symbols=SYMBOLS,
                ping_interval_s=0.5,
                dead_after_s=1.5,
                backoff_initial_s=0.05,
                backoff_max_s=0.5,
                feed=FeedConfig(snapshot_timeout_s=0.5),
            ),
            sink=ParquetSink(lake, max_age_s=2.0),
            cursor_store=FileCursorStore(lake),
            gap_ledger=JsonlGapLedger(lake),
            connect=websocket_source.connect,
            wall_ns=sim.event_ns,  # receipt times in market time: the trade-time window holds
        )
        capture_until_caught_up(sim, capture, budget_s=seconds * 3)
    elapsed = time.monotonic() - started

    con = connect(lake)
    gaps = read_gaps(lake)
    checks = check(tape, trades_by_symbol(con), gaps)
    stored = dict(con.sql("SELECT symbol, count(*) FROM trades_stored GROUP BY 1").fetchall())
    reasons = Counter(g.reason for g in gaps)
    result = DemoResult(checks, stored, dict(sorted(reasons.items())), capture.stats, sim.stats)
    _report(result, elapsed, lake, out)

    compacted, _ = compact_lake(lake, LATEST_NS)  # the capture has stopped: every hour is closed
    after = check(tape, trades_by_symbol(connect(lake)), gaps)
    result = replace(result, checks=after)  # the exit status is the compacted lake's
    print(
        f"\ncompacted {len(compacted)} hour partitions (tradelake compact):"
        f" {sum(c.files_before for c in compacted):,} files -> {len(compacted)},"
        f" {sum(c.duplicates for c in compacted):,} stored duplicates removed; read again, the"
        f" lake {'checks the same' if after == checks else f'DIFFERS from before: {after}'}",
        file=out,
    )

    rolled = rollup_lake(lake)  # then connect again: the rollup views exist once files do
    print(
        f"\nrollups ({', '.join(ROLLUPS)}, the SQL Athena runs, translated for DuckDB): "
        f"{len(rolled) // len(ROLLUPS)} symbol-hours under {lake}/rollups/; the hourly bars:",
        file=out,
    )
    print(BARS_QUERY.strip(), file=out, flush=True)
    connect(lake).sql(BARS_QUERY).show(max_rows=30, max_width=160)

    print(
        f"\nExplore it yourself: tradelake query --lake {lake} "
        '"SELECT side, count(*), sum(qty) FROM trades GROUP BY side"\n'
        f"  or a ready query: tradelake query --lake {lake} --named top_prices_by_side "
        f"--symbol {SYMBOLS[0]}",
        file=out,
    )
    print(f"\nThe charts: {describe(write_report(lake, lake / REPORT_NAME))}", file=out)
    return result


def trades_by_symbol(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[int, str]]]:
    """``(ts_ns, trade_key)`` of every trade the ``trades`` view reads, by symbol."""
    rows: dict[str, list[tuple[int, str]]] = {}
    for symbol, ts_ns, key in con.sql("SELECT symbol, ts_ns, trade_key FROM trades").fetchall():
        rows.setdefault(symbol, []).append((ts_ns, key))
    return rows


def capture_until_caught_up(sim: Simulator, capture: Capture, budget_s: float) -> None:
    """Run ``capture`` until it holds the simulator's last trade of every symbol.

    Once the market is over the faults end (``calm``), so the capture can reconnect and catch up;
    ``budget_s`` bounds the whole run in case it never does.
    """
    last = sim.last_trades()
    stop = threading.Event()

    def watch() -> None:
        give_up = time.monotonic() + budget_s
        while not sim.finished and time.monotonic() < give_up:
            time.sleep(0.05)
        sim.calm()
        while time.monotonic() < give_up:
            positions = capture.positions()
            if all(positions.get(s, -1) >= ts for s, ts in last.items()):
                break
            time.sleep(0.05)
        stop.set()

    threading.Thread(target=watch, name="tradelake-demo-watch", daemon=True).start()
    capture.run(stop=stop)


def _report(result: DemoResult, elapsed: float, lake: Path, out: TextIO) -> None:
    sim, cap = result.simulator, result.capture
    resubscribes = sum(s.resubscribes for s in cap.symbols.values())
    print(
        f"\nsimulator: {sim.connections} connections; injected {sim.drops} drops without close "
        f"frame, {sim.closes} clean closes, {sim.stalls} stalls, {sim.malformed} malformed "
        f"frames, {sim.errors} error replies, {sim.unknown} unknown messages, "
        f"{sim.late_snapshots} late, {sim.lost_snapshots} lost and {sim.bad_snapshots} "
        "unusable snapshots",
        file=out,
    )
    print(
        f"capture:   {elapsed:.1f} s, {cap.reconnects} reconnects ({cap.dead_connections} "
        f"detected dead by silence), {resubscribes} re-subscribes for a snapshot, "
        f"{cap.malformed_frames} malformed frames skipped, {cap.subscribe_errors} error replies "
        f"retried, {cap.flushes} flushes",
        file=out,
    )
    print(f"\nlake {lake}/ against the simulator's ground truth:", file=out)
    header = ("symbol", "expected", "read", "stored twice", "dup dropped", "gaps", "in gaps")
    print(
        f"  {header[0]:<11}" + "".join(f"{h:>13}" for h in header[1:]) + f"{'MISSING':>10}",
        file=out,
    )
    for c in result.checks:
        s = cap.symbols[c.symbol]
        twice = result.stored.get(c.symbol, 0) - c.in_lake
        print(
            f"  {c.symbol:<11}{c.expected:>13,}{c.in_lake:>13,}{twice:>13,}{s.duplicates:>13,}"
            f"{s.gaps:>13,}{c.missing_in_gaps:>13,}{c.missing_outside_gaps:>10,}",
            file=out,
        )
    print(
        "  gaps by reason: "
        + ", ".join(
            f"{n} {reason} ({GAP_REASONS.get(reason, '?')})"
            for reason, n in result.gap_reasons.items()
        ),
        file=out,
    )
    if result.complete:
        print(
            "  => complete: every trade outside the declared gaps is in the lake exactly once "
            "(0 missing, 0 duplicates, 0 invented)",
            file=out,
        )
    else:
        bad = [c for c in result.checks if not c.complete]
        print(f"  => INCOMPLETE: {bad}", file=out)
