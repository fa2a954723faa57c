"""Every simulator fault at once, plus a slow consumer, against the real capture.

The real capture loop reads the simulator over a real websocket on 127.0.0.1 and writes a real
Parquet lake through a sink that now and then blocks (the capture falls behind the market). The
lake, read through the read-once view, must hold every trade of the tape outside declared gaps
exactly once, and every fault must show in the capture's counters or its EMF metrics.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_lambda_powertools import Logger, Metrics

from aws_world import to_stdout
from chaos.suite import Chaos, check_lake
from fakes import SlowSink
from tradelake.adapters import websocket_source
from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.emf_metrics import CaptureMetrics
from tradelake.adapters.lake_files import FileCursorStore, JsonlGapLedger, read_gaps
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.capture import Capture, CaptureConfig
from tradelake.demo import capture_until_caught_up
from tradelake.feed import FeedConfig
from tradelake.simulator import Faults, Simulator, SimulatorConfig, synthetic_tape

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT", "s1INCHUSDT")
START_NS = 1_795_737_600_000_000_000  # 2026-11-27T00:00Z
HOUR_NS = 3_600_000_000_000
WALL_S = 10.0
"""Wall seconds per market hour: compression 360."""
PAUSE_S = 0.5
"""The slow consumer's pause: shorter than ``dead_after_s``, so a pause alone is no dead socket."""


def emf_documents(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_every_simulator_fault_and_a_slow_consumer_lose_nothing_outside_gaps(
    tmp_path: Path,
    chaos: Chaos,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hours = chaos.scale
    tape = synthetic_tape(SYMBOLS, START_NS, hours * HOUR_NS, seed=chaos.seed, rate=1.5)
    faults = Faults(
        # per connection, drop, close and stall are equally likely to come first: a dozen or
        # so connections end this way in 10 s (the draws are seeded per connection)
        drop_every=1.0,
        close_every=1.0,
        stall_every=1.0,
        stall_seconds=1.2,
        storm_every=4.0,
        storm_seconds=0.6,
        malformed_rate=0.05,
        error_rate=0.25,
        unknown_keys=True,
        late_snapshot_rate=0.3,
        lost_snapshot_rate=0.15,
        bad_snapshot_rate=0.15,
        seed=chaos.seed,
    )
    compression = 3600 / WALL_S
    sink = SlowSink(ParquetSink(tmp_path, max_age_s=0.3), every=2, pause_s=PAUSE_S)
    logger = Logger(service="ingest-chaos")  # its status lines carry the lag
    to_stdout(logger)
    report = CaptureMetrics(
        Metrics(namespace="tradelake-chaos", service="ingest"), 0.5, logger=logger
    )
    with Simulator(tape, SimulatorConfig(compression=compression, faults=faults)) as sim:
        capture = Capture(
            CaptureConfig(
                url=sim.url,
                symbols=SYMBOLS,
                ping_interval_s=0.3,
                dead_after_s=1.0,
                backoff_initial_s=0.03,
                backoff_max_s=0.3,
                # Lag is sampled once per status: often enough to catch a 0.5 s pause
                status_interval_s=0.05,
                # refusals at 25 %: a symbol is given up after 12 in a row (odds: 6e-8)
                feed=FeedConfig(snapshot_timeout_s=0.3, max_subscribe_errors=12),
            ),
            sink=sink,
            cursor_store=FileCursorStore(tmp_path),
            gap_ledger=JsonlGapLedger(tmp_path),
            connect=websocket_source.connect,
            on_status=report,
            wall_ns=sim.event_ns,
        )
        capture_until_caught_up(sim, capture, budget_s=WALL_S * hours * 3 + 10)
    report.emit(capture.stats)  # the last interval, as the ingest handler does
    out = capsys.readouterr().out
    docs = emf_documents(out)
    status = [json.loads(line) for line in out.splitlines() if '"message":"status"' in line]

    served, stats = sim.stats, capture.stats
    chaos.injected.update(
        {
            "drops": served.drops - served.storm_drops,
            "drop storms": served.storms,
            "storm drops": served.storm_drops,
            "closes": served.closes,
            "stalls": served.stalls,
            "malformed frames": served.malformed,
            "error replies": served.errors,
            "late snapshots": served.late_snapshots,
            "lost snapshots": served.lost_snapshots,
            "bad snapshots": served.bad_snapshots,
            "slow-consumer pauses": sink.pauses,
        }
    )
    assert all(chaos.injected.values()), f"every fault struck at least once: {chaos.injected}"

    # Nothing lost outside a declared gap, nothing read twice, nothing that is not the tape's.
    checks = check_lake(tape, tmp_path)
    for c in checks:
        assert c.complete, c
        # the capture really spans the market: a lake counts from its first trade of a symbol,
        # and with a 10 s market hour, drops and 25 % refusals the first one can come 4-6 s in
        # (a CI run saw 2,156 of ~5,400), so "a good part of it", not "most of it"
        assert c.expected > 1500 * hours, c
    stored = connect(tmp_path).sql("SELECT count(*) FROM trades_stored").fetchall()
    assert stored == [(stats.written,)] == [(sum(c.in_lake for c in checks),)], "no copy stored"

    # Every fault shows: in the capture's counters, and in the EMF metrics made from them.
    def total(name: str) -> float:
        return sum(sum(_values(d.get(name))) for d in docs)

    assert stats.reconnects >= served.drops + served.closes
    assert stats.dead_connections > 0, "stalls are noticed by silence"
    assert stats.malformed_frames > 0
    assert stats.subscribe_errors > 0
    assert sum(s.resubscribes for s in stats.symbols.values()) > 0, "lost/bad snapshots"
    assert (total("Reconnects"), total("DeadConnections"), total("MalformedFrames")) == (
        stats.reconnects,
        stats.dead_connections,
        stats.malformed_frames,
    )
    assert total("TradesWritten") == stats.written
    lags = [s["lag_ms_max"] for s in status if "lag_ms_max" in s]
    behind_ms = PAUSE_S * compression * 1000
    # without the pauses the lag stays under ~5 s of market time; a pause while the socket
    # carries trades shows as the pause (scaled to market time)
    assert max(lags) >= 0.5 * behind_ms, "the slow consumer shows as lag (market ms)"


def _values(value: object) -> list[float]:
    """An EMF value: a number, a list of them, or absent (a zero is not published)."""
    if value is None:
        return []
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]  # type: ignore[arg-type]


def test_a_flush_longer_than_dead_after_is_not_a_dead_connection(
    tmp_path: Path, chaos: Chaos
) -> None:
    tape = synthetic_tape(("BTCUSD",), START_NS, HOUR_NS, seed=chaos.seed, rate=1.0)
    sink = SlowSink(ParquetSink(tmp_path, max_age_s=0.3), every=2, pause_s=1.5)
    with Simulator(tape, SimulatorConfig(compression=3600 / 5)) as sim:  # no server fault
        capture = Capture(
            CaptureConfig(url=sim.url, symbols=("BTCUSD",), ping_interval_s=0.3, dead_after_s=1.0),
            sink=sink,
            cursor_store=FileCursorStore(tmp_path),
            gap_ledger=JsonlGapLedger(tmp_path),
            connect=websocket_source.connect,
            wall_ns=sim.event_ns,
        )
        capture_until_caught_up(sim, capture, budget_s=15)
    chaos.injected["slow-consumer pauses longer than dead_after_s"] = sink.pauses
    assert sink.pauses > 0
    assert all(c.complete for c in check_lake(tape, tmp_path))
    assert capture.stats.dead_connections == 0, "the server never went quiet: frames were waiting"
    assert [g.reason for g in read_gaps(tmp_path)] == ["no_cursor"], "nothing lost to a pause"
