"""``rollup_lake`` runs each rollup once per batch of hours: its files are, byte for byte, those
of the SQL Athena runs, once per symbol and hour partition.

The per-hour files are made here as the rollup made them before batches: ``duckdb_sql`` of
the rollup with the hour's parameters, over ``trades`` bound to that hour's directory, written
by ``write_bars``. The lake has three symbols over 11 hours across midnight and two batch
boundaries, trades on both sides of each hour boundary, identical fills in one nanosecond,
copies stored again later, a file delivered twice, a batch with no copy at all, an hour whose
only file has no rows, and late files rolled up again in a range.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analytics_reference import at, write
from tradelake.adapters.duckdb_lake import bind_trades, connect
from tradelake.adapters.duckdb_rollup import lake_hours, rollup_lake, write_bars
from tradelake.analytics import ROLLUPS, duckdb_sql, hour_params
from tradelake.model import BUY, FIXED_SCALE, INCREMENTAL, SELL, SNAPSHOT, Trade
from tradelake.partitions import NS_PER_HOUR, partition_prefix

pytestmark = pytest.mark.integration

SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")
START = 1_764_273_600_000_000_000  # 2025-11-27T20:00:00Z: 20h to 06h, batches 18h, 00h, 06h
HOURS = 11
QUIET = "sBTCUSDT"
"""Its trades are stored once each: its batches are read without the view's window."""


def market(seed: int) -> list[Trade]:
    """Trades of ``SYMBOLS``, identical fills in one nanosecond included, each stored once."""
    rng = random.Random(seed)
    times = [rng.randrange(START, START + HOURS * NS_PER_HOUR) for _ in range(1500)]
    times += [START + h * NS_PER_HOUR + d for h in range(1, HOURS) for d in (-1, 0, 1)]
    seen: Counter[tuple[str, int, str, int, int]] = Counter()
    trades = []
    for seq, ts_ns in enumerate(sorted(times)):
        symbol = rng.choice(SYMBOLS)
        side = rng.choice((BUY, SELL))
        price = rng.randrange(10**FIXED_SCALE, 10**16)
        qty = rng.choice((10**FIXED_SCALE, rng.randrange(1, 10**14)))
        for _ in range(rng.choice((1, 1, 2))):
            fill = (symbol, ts_ns, side, price, qty)
            trades.append(Trade(*fill, seen[fill], ts_ns + 5000, seq, INCREMENTAL))
            seen[fill] += 1
    return trades


def per_hour_files(lake: Path, reference: Path) -> dict[str, bytes]:
    """The rollup files of every hour of ``lake``, one query per rollup and hour, as Athena."""
    con = connect(lake)
    for symbol, hour in lake_hours(lake):
        bind_trades(con, lake / partition_prefix(symbol, int(hour.timestamp()) * 10**9))
        for name in ROLLUPS:
            bars = con.sql(duckdb_sql(name, **hour_params(symbol, hour))).to_arrow_table()
            write_bars(reference, name, symbol, hour, bars)
    return files_of(reference)


def files_of(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / "rollups").rglob("*"))
        if p.is_file()
    }


def test_batched_rollups_are_the_per_hour_files_byte_for_byte(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    trades = market(seed=11)
    write(lake, [t for t in trades if t.ts_ns < START + 5 * NS_PER_HOUR])
    write(lake, [t for t in trades if t.ts_ns >= START + 5 * NS_PER_HOUR])
    copies = [
        t._replace(recv_ns=t.recv_ns + 10**9, seq=0, source=SNAPSHOT)
        for t in trades[::7]
        if t.symbol != QUIET
    ]
    write(lake, copies)  # stored again later, after a crash
    [delivered, *_] = sorted((lake / "trades" / "symbol=BTCUSD").rglob("*.parquet"))
    shutil.copy(delivered, delivered.with_name("0-delivered-again.parquet"))
    empty = lake / partition_prefix(QUIET, START + HOURS * NS_PER_HOUR) / "empty.parquet"
    empty.parent.mkdir(parents=True)
    pq.write_table(pq.read_table(delivered).slice(0, 0), empty)  # an hour of no rows

    con = connect(lake)
    twice = con.sql(
        "SELECT symbol, count(*) > count(DISTINCT trade_key) FROM trades_stored GROUP BY symbol"
    ).fetchall()
    assert sorted(twice) == [("BTCUSD", True), ("BTCUSDT", True), (QUIET, False)]

    files = rollup_lake(lake)
    assert len(files) == len(lake_hours(lake)) * len(ROLLUPS) == (3 * HOURS + 1) * 2
    expected = per_hour_files(lake, tmp_path / "per-hour")
    assert files_of(lake) == expected
    assert {p.relative_to(lake).as_posix() for p in files} == set(expected)

    late = market(seed=12)  # new trades, and new copies, in hours rolled up already
    late = [t for t in late if START + 3 * NS_PER_HOUR <= t.ts_ns < START + 6 * NS_PER_HOUR]
    write(lake, [*late, *(t._replace(recv_ns=t.recv_ns + 1) for t in trades[1::50])])
    before = {
        p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (lake / "rollups").rglob("*.parquet")
    }
    files = rollup_lake(lake, at(START + 3 * NS_PER_HOUR), at(START + 6 * NS_PER_HOUR))
    assert files == [
        lake / partition_prefix(symbol, hour, f"rollups/{name}") / f"{name}.parquet"
        for symbol in SYMBOLS
        for hour in range(START + 3 * NS_PER_HOUR, START + 6 * NS_PER_HOUR, NS_PER_HOUR)
        for name in ROLLUPS
    ]  # in order
    hours = {p.parent.name for p in files}
    assert hours == {"hour=23", "hour=00", "hour=01"}  # across midnight and a batch boundary
    assert len(files) == 3 * len(SYMBOLS) * len(ROLLUPS)
    rewritten = {p for p, (mtime, _) in before.items() if p.stat().st_mtime_ns != mtime}
    assert rewritten == set(files)  # the range's files, nothing else
    assert all(p.read_bytes() != before[p][1] for p in files)  # each with late trades
    shutil.rmtree(tmp_path / "per-hour")
    assert files_of(lake) == per_hour_files(lake, tmp_path / "per-hour")  # late trades in


def test_a_trade_stored_outside_its_hour_stops_the_run_before_it_writes(tmp_path: Path) -> None:
    """Its bar would be in no hour's file of the batch: an error, not a bar lost."""
    lake = tmp_path / "lake"
    write(lake, [t for t in market(seed=13) if t.symbol == QUIET])
    [first, *_] = sorted((lake / "trades").rglob("*.parquet"))  # hour 20, batch 18h-24h
    misfiled = lake / partition_prefix(QUIET, START + 10 * NS_PER_HOUR) / "misfiled.parquet"
    shutil.copy(first, misfiled)  # into hour 06, batch 06h-12h
    with pytest.raises(ValueError, match="outside its event hour's partition"):
        rollup_lake(lake, at(START + 10 * NS_PER_HOUR))
    assert not (lake / "rollups").exists()
