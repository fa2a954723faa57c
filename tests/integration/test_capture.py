"""The real capture loop over real websockets against the simulator, into a real Parquet lake.

Each test compares the lake (read back with DuckDB) with the simulator's own tape: every trade
outside declared gaps must be there exactly once.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tradelake.adapters import websocket_source
from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.lake_files import FileCursorStore, JsonlGapLedger, read_gaps
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.capture import Capture, CaptureConfig
from tradelake.demo import capture_until_caught_up
from tradelake.feed import FeedConfig
from tradelake.simulator import Faults, Simulator, SimulatorConfig, synthetic_tape
from tradelake.simulator.tape import Tape
from tradelake.verify import SymbolCheck, check, tape_keys

pytestmark = pytest.mark.integration

SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT", "s1INCHUSDT")
START_NS = 1_795_737_600_000_000_000  # 2026-11-27T00:00Z
HOUR_NS = 3_600_000_000_000
# Fast liveness so that stalls and dead sockets are noticed within a second or two, and a
# missing snapshot is asked for again after 0.3 s; refusals are injected at 30 %, so a symbol is
# given up only after 12 in a row (odds: 5e-7).
FAST = CaptureConfig(
    ping_interval_s=0.3,
    dead_after_s=1.0,
    backoff_initial_s=0.03,
    backoff_max_s=0.3,
    feed=FeedConfig(snapshot_timeout_s=0.3, max_subscribe_errors=12),
)


def make_capture(sim: Simulator, lake: Path, symbols: tuple[str, ...] = SYMBOLS) -> Capture:
    """The real capture into ``lake``, its receipt clock on the simulator's market time."""
    return Capture(
        replace(FAST, url=sim.url, symbols=symbols),
        sink=ParquetSink(lake, max_age_s=0.5),
        cursor_store=FileCursorStore(lake),
        gap_ledger=JsonlGapLedger(lake),
        connect=websocket_source.connect,
        wall_ns=sim.event_ns,
    )


def lake_rows(lake: Path) -> dict[str, list[tuple[int, str]]]:
    rows: dict[str, list[tuple[int, str]]] = {}
    for symbol, ts_ns, key in (
        connect(lake).sql("SELECT symbol, ts_ns, trade_key FROM trades").fetchall()
    ):
        rows.setdefault(symbol, []).append((ts_ns, key))
    return rows


def verify(tape: Tape, lake: Path) -> list[SymbolCheck]:
    return check(tape, lake_rows(lake), read_gaps(lake))


def test_every_fault_at_once_loses_nothing_outside_declared_gaps(tmp_path: Path) -> None:
    tape = synthetic_tape(SYMBOLS, START_NS, HOUR_NS, seed=11, rate=2.0)  # ~7,200 a symbol
    faults = Faults(
        drop_every=1.5,
        close_every=2.5,
        stall_every=1.0,  # per connection: about half of them stall before they drop or close
        stall_seconds=1.5,
        malformed_rate=0.05,
        error_rate=0.3,
        unknown_keys=True,
        late_snapshot_rate=0.3,
        lost_snapshot_rate=0.15,
        bad_snapshot_rate=0.15,
        seed=3,
    )
    config = SimulatorConfig(compression=3600 / 8, faults=faults)  # the hour in 8 s
    with Simulator(tape, config) as sim:
        capture = make_capture(sim, tmp_path)
        capture_until_caught_up(sim, capture, budget_s=30)

    stats = sim.stats
    injected = (stats.drops, stats.closes, stats.stalls, stats.malformed, stats.errors)
    assert min(*injected, stats.late_snapshots, stats.lost_snapshots, stats.bad_snapshots) > 0
    assert capture.stats.reconnects >= stats.drops + stats.closes
    assert capture.stats.malformed_frames > 0  # some garbage dies with a dropped socket
    assert sum(s.resubscribes for s in capture.stats.symbols.values()) > 0
    checks = verify(tape, tmp_path)
    for c in checks:
        assert c.complete, c
        assert c.expected > 6000, c  # the capture really spans the hour
    stored = connect(tmp_path).sql("SELECT count(*) FROM trades_stored").fetchall()
    assert stored == [(capture.stats.written,)]
    assert sum(c.in_lake for c in checks) == capture.stats.written, "no crash: nothing stored twice"


def test_a_stall_longer_than_the_snapshot_is_a_gap_bracketing_the_missing_trades(
    tmp_path: Path,
) -> None:
    tape = synthetic_tape(("BTCUSD",), START_NS, HOUR_NS, seed=5, rate=4.0)
    faults = Faults(stall_every=2.0, stall_seconds=2.0, seed=1)
    config = SimulatorConfig(compression=3600 / 6, snapshot_size=50, faults=faults)
    with Simulator(tape, config) as sim:
        capture = make_capture(sim, tmp_path, ("BTCUSD",))
        capture_until_caught_up(sim, capture, budget_s=30)

    assert sim.stats.stalls > 0
    gaps = read_gaps(tmp_path)
    assert [g.reason for g in gaps[:1]] == ["no_cursor"], "the first run starts without a cursor"
    assert gaps[1:]
    assert all(g.reason == "snapshot_short" for g in gaps[1:])
    have = {key for _, key in lake_rows(tmp_path)["BTCUSD"]}
    missing = [ts for ts, key in tape_keys("BTCUSD", tape["BTCUSD"]) if key not in have]
    assert missing, "a stall of 2 s at this rate must cost more than a 50-trade snapshot"
    for gap in gaps[1:]:
        inside = [ts for ts in missing if gap.from_ts_ns <= ts <= gap.to_ts_ns]
        assert inside, f"{gap} declares an interval where nothing is missing"
    assert all(any(g.from_ts_ns <= ts <= g.to_ts_ns for g in gaps) for ts in missing)
    (result,) = verify(tape, tmp_path)
    assert result.complete
    assert result.missing_in_gaps == len(missing)


def test_a_rerun_resumes_from_the_cursor_without_duplicates_or_gaps(tmp_path: Path) -> None:
    tape = synthetic_tape(SYMBOLS, START_NS, HOUR_NS, seed=2, rate=1.0)
    config = SimulatorConfig(compression=3600 / 6)
    with Simulator(tape, config) as sim:
        first = make_capture(sim, tmp_path)
        first.run(deadline=first.clock() + 2.5)
        saved = FileCursorStore(tmp_path).load()
        assert set(saved.symbols) == set(SYMBOLS)
        assert saved == first.cursor, "the cursor on disk is what the run ended with"
        written_first = first.stats.written
        second = make_capture(sim, tmp_path)
        capture_until_caught_up(sim, second, budget_s=20)

    assert second.stats.duplicates > 0, "the resubscribe snapshot overlapped the first run"
    assert [g.reason for g in read_gaps(tmp_path)] == ["no_cursor"] * len(SYMBOLS), (
        "only the first run, which had no cursor, declares anything"
    )
    for c in verify(tape, tmp_path):
        assert c.complete, c
    assert written_first + second.stats.written == sum(len(r) for r in lake_rows(tmp_path).values())


def test_a_symbol_phemex_keeps_refusing_is_given_up_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    tape = synthetic_tape(("BTCUSD",), START_NS, HOUR_NS, seed=1, rate=1.0)
    with Simulator(tape, SimulatorConfig(compression=60)) as sim:
        capture = make_capture(sim, tmp_path, ("BTCUSD", "ETHUSD"))
        capture.run(deadline=capture.clock() + 5)
    assert list(capture.stats.rejected) == ["ETHUSD"]
    assert "trade.subscribe for ETHUSD: 6001" in capture.stats.rejected["ETHUSD"]
    assert capture.stats.symbols["BTCUSD"].written > 0
    assert FileCursorStore(tmp_path).load().symbols["BTCUSD"].ts_ns > 0
