"""The analytics SQL computed again in plain Python, and lakes with every awkward case to run on.

Nothing here uses DuckDB, sqlglot or the SQL files: trades are read once by ``trade_key`` (the
first received copy), bars, rankings and counts are computed from ``Trade`` tuples with exact
``Decimal`` and ``Fraction`` arithmetic, so a test can compare the SQL's results with these
for equality, not closeness.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from fractions import Fraction
from pathlib import Path

from tradelake.adapters.lake_files import JsonlGapLedger
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.model import (
    BUY,
    EARLIEST_NS,
    FIXED_SCALE,
    INCREMENTAL,
    SELL,
    SNAPSHOT,
    Gap,
    Trade,
    trade_key,
)
from tradelake.partitions import NS_PER_HOUR

NS_PER_MS = 10**6
NS_PER_MINUTE = 60 * 10**9
HOUR_13 = 1_764_248_400_000_000_000  # 2025-11-27T13:00:00Z
HOUR_14 = HOUR_13 + NS_PER_HOUR
HOUR_15 = HOUR_14 + NS_PER_HOUR
HOUR_16 = HOUR_15 + NS_PER_HOUR
SYMBOLS = ("BTCUSD", "sBTCUSDT")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EXACT = Context(prec=100)


def at(ts_ns: int) -> datetime:
    """The UTC datetime of a time in ns, to the microsecond (what a TIMESTAMP holds)."""
    return EPOCH + timedelta(microseconds=ts_ns // 1000)


def ns(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1) * 1000


def dec(unscaled: int, scale: int = FIXED_SCALE) -> Decimal:
    """The decimal of an unscaled integer, exactly (Decimal's default context keeps 28 digits)."""
    return Decimal(unscaled).scaleb(-scale, EXACT)


EVERY_ROW = "SELECT * FROM trades ORDER BY symbol, trade_key"


def read(lake: Path, query: str = EVERY_ROW) -> list[tuple[object, ...]]:
    """The rows of ``query`` over the real DuckDB lake at ``lake`` (default: every trade once)."""
    from tradelake.adapters.duckdb_lake import connect

    return connect(lake).sql(query).fetchall()


def stored(lake: Path) -> int:
    """Rows stored in ``lake``, copies included (``trades_stored``)."""
    [(n,)] = read(lake, "SELECT count(*) FROM trades_stored")
    assert isinstance(n, int)
    return n


def read_once(stored: Iterable[Trade]) -> list[Trade]:
    """One trade per ``trade_key``: the copy received first (recv_ns, then seq, then source)."""
    first: dict[str, Trade] = {}
    for t in stored:
        key = trade_key(t)
        if key not in first or (t.recv_ns, t.seq, t.source) < (
            first[key].recv_ns,
            first[key].seq,
            first[key].source,
        ):
            first[key] = t
    return list(first.values())


def half_up(value: Fraction, scale: int) -> Decimal:
    """``value`` rounded half away from zero at ``scale`` digits (positive values here)."""
    scaled = value * 10**scale
    whole = scaled.numerator // scaled.denominator
    whole += scaled - whole >= Fraction(1, 2)
    return dec(whole, scale)


def bars(trades: Iterable[Trade], symbol: str, span_ns: int) -> list[tuple[object, ...]]:
    """OHLCV bars of ``symbol``: one per ``span_ns`` with trades, in time order."""
    groups: dict[int, list[Trade]] = {}
    for t in trades:
        if t.symbol == symbol:
            groups.setdefault(t.ts_ns // span_ns, []).append(t)
    rows: list[tuple[object, ...]] = []
    for bar, group in sorted(groups.items()):
        ordered = sorted(group, key=lambda t: (t.ts_ns, trade_key(t)))
        volume = sum(t.qty for t in group)
        quote = sum(t.price * t.qty for t in group)  # scale 20
        rows.append(
            (
                symbol,
                at(bar * span_ns),
                dec(ordered[0].price),
                dec(max(t.price for t in group)),
                dec(min(t.price for t in group)),
                dec(ordered[-1].price),
                dec(volume),
                dec(quote, 2 * FIXED_SCALE),
                half_up(Fraction(quote, 10**FIXED_SCALE) / volume, 20),
                len(group),
                dec(sum(t.qty for t in group if t.side == BUY)),
                dec(sum(t.qty for t in group if t.side == SELL)),
            )
        )
    return rows


def in_range(t: Trade, start: datetime, end: datetime) -> bool:
    """``ts`` (``ts_ns`` to the millisecond) in ``[start, end)``."""
    ts = t.ts_ns // NS_PER_MS * NS_PER_MS
    return ns(start) <= ts < ns(end)


def top_prices_by_side(
    trades: Iterable[Trade], symbol: str, start: datetime, end: datetime
) -> list[tuple[object, ...]]:
    """Per side, the 50 prices with most trades (ties: lower price): side, price, trades, qty."""
    counts: Counter[tuple[str, int]] = Counter()
    volumes: Counter[tuple[str, int]] = Counter()
    for t in trades:
        if t.symbol == symbol and in_range(t, start, end):
            counts[t.side, t.price] += 1
            volumes[t.side, t.price] += t.qty
    rows: list[tuple[object, ...]] = []
    for side in sorted({side for side, _ in counts}):
        ranked = sorted((-n, price) for (s, price), n in counts.items() if s == side)[:50]
        rows += [(side, dec(price), -n, dec(volumes[side, price])) for n, price in ranked]
    return rows


def price_side_over_time(
    trades: Iterable[Trade], symbol: str, start: datetime, end: datetime
) -> list[tuple[object, ...]]:
    chosen = [t for t in trades if t.symbol == symbol and in_range(t, start, end)]
    chosen.sort(key=lambda t: (t.ts_ns, trade_key(t)))
    return [
        (at(t.ts_ns // NS_PER_MS * NS_PER_MS), t.side, dec(t.price), dec(t.qty)) for t in chosen
    ]


def completeness(
    trades: Iterable[Trade], gaps: Iterable[Gap], start: datetime, end: datetime
) -> list[tuple[object, ...]]:
    """Per symbol and hour with trades overlapping [start, end): trades, gaps touching it."""
    counts = Counter((t.symbol, t.ts_ns // NS_PER_HOUR) for t in trades)
    gaps = list(gaps)
    rows: list[tuple[object, ...]] = []
    for (symbol, hour), n in sorted(counts.items()):
        begin = hour * NS_PER_HOUR
        if begin >= ns(end) or begin + NS_PER_HOUR <= ns(start):
            continue
        touching = sum(
            g.symbol == symbol and g.from_ts_ns < begin + NS_PER_HOUR and g.to_ts_ns >= begin
            for g in gaps
        )
        rows.append((symbol, at(begin), n, touching))
    return rows


@dataclass(frozen=True)
class Lake:
    path: Path
    stored: list[Trade]
    """Every stored row, copies included."""
    gaps: list[Gap]

    @property
    def trades(self) -> list[Trade]:
        return read_once(self.stored)


def market(seed: int) -> list[Trade]:
    """Trades of two symbols over hours 13 to 15: identical fills in one nanosecond, different
    fills in one nanosecond at a minute's first and last instants (open and close are decided by
    trade_key), fills on both sides of hour boundaries, and 70 prices, so the top-50 cut counts."""
    rng = random.Random(seed)
    prices = {s: [rng.randrange(1, 10**16) for _ in range(70)] for s in SYMBOLS}
    minute = HOUR_14 + 7 * NS_PER_MINUTE
    times = [rng.randrange(HOUR_13, HOUR_16) for _ in range(700)]
    times += [b + d for b in (HOUR_14, HOUR_15) for d in (-1, 0, 1)]
    times += [minute] * 4 + [minute + NS_PER_MINUTE - 1] * 4
    seen: Counter[tuple[str, int, str, int, int]] = Counter()
    trades: list[Trade] = []
    for seq, ts_ns in enumerate(sorted(times)):
        symbol = "BTCUSD" if minute <= ts_ns < minute + NS_PER_MINUTE else rng.choice(SYMBOLS)
        side = rng.choice((BUY, SELL))
        price = rng.choice(prices[symbol][: rng.randint(1, 70)])  # the first prices most often
        qty = rng.choice((10**FIXED_SCALE, rng.randrange(1, 10**14)))
        for _ in range(rng.choice((1, 1, 1, 2, 3))):  # identical fills: k = 0, 1, 2
            fill = (symbol, ts_ns, side, price, qty)
            trades.append(Trade(*fill, seen[fill], ts_ns + 5000, seq, INCREMENTAL))
            seen[fill] += 1
    return trades


def write(path: Path, trades: list[Trade]) -> None:
    sink = ParquetSink(path)
    sink.add(trades)
    sink.flush()


def build_lake(path: Path, seed: int) -> Lake:
    """A lake of ``market(seed)`` where one trades file (BTCUSD, hour 14) was delivered twice, a
    byte copy, and other trades were stored again later (a snapshot after a crash); with gaps
    that end or start on hour boundaries."""
    trades = market(seed)
    resent = [t._replace(recv_ns=t.recv_ns + 10**9, seq=0, source=SNAPSHOT) for t in trades[::9]]
    write(path, resent)  # the later copies first: which file is read first is no rule
    batch: list[Trade] = []
    rest: list[Trade] = []
    for t in trades:
        (batch if t.symbol == "BTCUSD" and HOUR_14 <= t.ts_ns < HOUR_15 else rest).append(t)
    write(path, rest)
    before = set(path.rglob("*.parquet"))
    write(path, batch)
    [delivered] = set(path.rglob("*.parquet")) - before
    shutil.copy(delivered, delivered.with_name("0-delivered-again.parquet"))
    gaps = [
        Gap("BTCUSD", HOUR_15 - 10, HOUR_15 - 1, HOUR_16, "snapshot_short"),  # touches 14 only
        Gap("BTCUSD", HOUR_15, HOUR_15, HOUR_16, "snapshot_short"),  # touches 15 only
        Gap("sBTCUSDT", HOUR_13 - 10**12, HOUR_15 + 1, HOUR_16, "snapshot_missing"),  # 13 to 15
        Gap("sBTCUSDT", EARLIEST_NS, HOUR_13, HOUR_16, "no_cursor"),  # to hour 13's first ns
    ]
    JsonlGapLedger(path).record(gaps)
    return Lake(path, trades + resent + batch, gaps)
