"""What the report shows, read from the lake through the ready queries and the rollups.

Every number comes from the shared SQL (``tradelake.analytics``, the same files Athena runs) on
the DuckDB views of ``adapters/duckdb_lake.py``: this module only chooses the parameters, wraps
a ready query where the page needs fewer rows than it returns, and shapes the results into the
JSON the page draws. Candles come from the rollups (the ``ohlcv_1m``/``ohlcv_1h`` views over what
``tradelake rollup`` wrote), and from the same rollup query run on the spot, in memory, for any
hour it has not written: the report reads the lake and never writes into it.

Sizes are bounded whatever the lake holds: price over time keeps at most ``PRICE_POINTS`` trades
per symbol (the lowest and highest price of each side in each time slice, so no extreme is
lost), and candles are merged into wider bars until there are at most ``MAX_BARS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypedDict

import duckdb

from tradelake.adapters.duckdb_lake import SymbolSummary, summary
from tradelake.analytics import duckdb_sql, hour_params
from tradelake.markets import market_of
from tradelake.schema import ROLLUP_COLUMNS

PRICE_POINTS = 4000
"""Most trades drawn per symbol; a slice keeps at most four (lowest and highest of each side)."""
MAX_BARS = 480
"""Most candles per symbol: about two pixels or more per bar on a laptop screen."""
BAR_SIZES = tuple(timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 4 * 60, 24 * 60, 7 * 24 * 60))
HOUR = timedelta(hours=1)
_NS_PER_MS = 1_000_000

GAP_MEANINGS = {
    "no_cursor": "The capture started without a cursor: it cannot know what came before its "
    "first trade, so everything before it is declared (the lake's start).",
    "snapshot_short": "After a (re)subscribe the snapshot did not reach back to the last trade "
    "written: more trades happened while away than the snapshot holds.",
    "snapshot_missing": "No usable snapshot came after every try, so trades were taken as they "
    "came, from the first one after the position.",
    "out_of_order": "A trade older than the position arrived and was dropped.",
}


class PriceData(TypedDict):
    """Columns of the trades drawn, in time order; ``s`` is one letter per trade (b or s)."""

    t: list[float]
    p: list[float]
    q: list[float]
    s: str
    buckets: int
    """Time slices the trades were thinned to; 0 when every trade is drawn."""


class CandleData(TypedDict):
    bar: int
    """Bar length, ms."""
    source: str
    t: list[int]
    o: list[float]
    h: list[float]
    l: list[float]  # noqa: E741 (the page reads o, h, l, c)
    c: list[float]
    v: list[float]
    bv: list[float]
    sv: list[float]
    n: list[int]
    vwap: list[float]


class TopPrice(TypedDict):
    side: str
    price: str
    """Exact."""
    p: float
    """For placing it."""
    trades: int
    volume: str


class HourData(TypedDict):
    t: int
    trades: int
    gaps: int


GapData = TypedDict(
    "GapData",
    {"from": float, "to": float, "from_utc": str, "to_utc": str, "reason": str, "why": str},
)


class Stats(TypedDict):
    trades: int
    stored: int
    first: str
    last: str
    low: str
    high: str
    close: str
    change: float
    """From the first trade's price to the last one's, percent."""
    gap_count: int
    covered: float
    """Share of the time shown that no declared gap covers."""


class SymbolData(TypedDict):
    symbol: str
    market: str
    start: int
    end: int
    stats: Stats
    price: PriceData
    candles: CandleData
    top: list[TopPrice]
    hours: list[HourData]
    gaps: list[GapData]


class ReportData(TypedDict):
    lake: str
    generated: str
    symbols: list[SymbolData]


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar, exact, as the rollups hold it (``quote_volume`` makes bars mergeable)."""

    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int
    buy_volume: Decimal
    sell_volume: Decimal


BAR_COLUMNS = "open, high, low, close, volume, quote_volume, trade_count, buy_volume, sell_volume"


def load(con: duckdb.DuckDBPyConnection, lake: Path) -> ReportData:
    """Everything the page draws, for every symbol of the lake (see the module docstring)."""
    symbols = summary(con)
    gaps: dict[str, list[tuple[int, int, str]]] = {}
    for symbol, from_ns, to_ns, reason in con.execute(
        "SELECT symbol, from_ts_ns, to_ts_ns, reason FROM gaps ORDER BY from_ts_ns, to_ts_ns"
    ).fetchall():
        gaps.setdefault(symbol, []).append((from_ns, to_ns, reason))
    hours: dict[str, list[HourData]] = {}
    if symbols:
        start, end = hours_of(min(s.first_ts for s in symbols), max(s.last_ts for s in symbols))
        completeness = duckdb_sql("completeness", start=start, end=end)
        for symbol, hour, trades, touching in con.execute(
            f"SELECT symbol, hour, trades, gaps FROM ({completeness}) AS hours ORDER BY hour"
        ).fetchall():
            hours.setdefault(symbol, []).append(
                HourData(t=ms(hour.replace(tzinfo=UTC)), trades=trades, gaps=touching)
            )
    return ReportData(
        lake=str(lake),
        generated=f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
        symbols=[
            symbol_data(con, s, hours.get(s.symbol, []), gaps.get(s.symbol, [])) for s in symbols
        ],
    )


def hours_of(first: datetime, last: datetime) -> tuple[datetime, datetime]:
    """``[start, end)``: from the hour holding ``first`` to the end of the one holding ``last``."""
    start = first.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return start, last.astimezone(UTC).replace(minute=0, second=0, microsecond=0) + HOUR


def symbol_data(
    con: duckdb.DuckDBPyConnection,
    s: SymbolSummary,
    hours: list[HourData],
    gaps: Sequence[tuple[int, int, str]],
) -> SymbolData:
    """One symbol's section, over the hours from its first trade's to its last trade's."""
    start, end = hours_of(s.first_ts, s.last_ts)
    bar_size = bar_size_for(end - start)
    with_trades = [datetime.fromtimestamp(h["t"] / 1000, UTC) for h in hours if h["trades"]]
    bars, source = candles(con, s.symbol, with_trades, bar_size)
    first, last = bars[0], bars[-1]  # a symbol in the lake has a trade, so a bar
    return SymbolData(
        symbol=s.symbol,
        market=str(market_of(s.symbol)),
        start=ms(start),
        end=ms(end),
        stats=Stats(
            trades=s.trade_keys,
            stored=s.trades,
            first=utc_text(s.first_ts),
            last=utc_text(s.last_ts),
            low=plain(min(b.low for b in bars)),
            high=plain(max(b.high for b in bars)),
            close=plain(last.close),
            change=float((last.close - first.open) / first.open * 100),
            gap_count=len(gaps),
            covered=covered(gaps, ms(start) * _NS_PER_MS, ms(end) * _NS_PER_MS),
        ),
        price=prices(con, s.symbol, start, end, s.trade_keys),
        candles=candle_data(bars, bar_size, source),
        top=top_prices(con, s.symbol, start, end),
        hours=hours,
        gaps=[
            GapData(
                {
                    "from": f / _NS_PER_MS,
                    "to": t / _NS_PER_MS,
                    "from_utc": ns_text(f),
                    "to_utc": ns_text(t),
                    "reason": reason,
                    "why": GAP_MEANINGS.get(reason, "A declared gap: trades may be missing."),
                }
            )
            for f, t, reason in gaps
        ],
    )


def ms(t: datetime) -> int:
    """Milliseconds since the epoch: what JavaScript's Date takes."""
    return round(t.timestamp() * 1000)


def plain(d: Decimal) -> str:
    """A decimal as people write it: ``60001.5``, not ``60001.5000000000`` or ``6.00015E+4``."""
    return format(d.normalize(), "f")


def utc_text(t: datetime) -> str:
    """``2026-11-27 00:00:17.356 UTC``: ``ts`` has milliseconds."""
    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3] + " UTC"


def ns_text(ns: int) -> str:
    """An exact nanosecond time in UTC: gap ends are exact, and the page shows them so."""
    seconds, fraction = divmod(ns, 10**9)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M:%S}.{fraction:09d} UTC"


def covered(gaps: Iterable[tuple[int, int, str]], start_ns: int, end_ns: int) -> float:
    """The share of ``[start_ns, end_ns)`` outside every gap (gaps may overlap)."""
    missing = 0
    reach = start_ns
    for first, last, _ in sorted(gaps):
        a, b = max(first, reach), min(last + 1, end_ns)
        if b > a:
            missing += b - a
            reach = b
    return 1 - missing / (end_ns - start_ns)


def prices(
    con: duckdb.DuckDBPyConnection, symbol: str, start: datetime, end: datetime, trades: int
) -> PriceData:
    """Price and side over time, thinned to at most ``PRICE_POINTS`` trades, extremes kept.

    The ready query gives every trade; past ``PRICE_POINTS`` it is wrapped to keep, per side and
    per time slice, the lowest and the highest price (first in time on a tie): the chart's
    envelope is exactly the full data's, at a quarter of ``PRICE_POINTS`` slices.
    """
    query = duckdb_sql("price_side_over_time", symbol=symbol, start=start, end=end)
    buckets = PRICE_POINTS // 4 if trades > PRICE_POINTS else 0
    if buckets:
        span = ms(end) - ms(start)
        query = f"""
            SELECT ts, side, price, qty FROM (
                SELECT *,
                    row_number() OVER (PARTITION BY side, slice ORDER BY price, ts) AS lowest,
                    row_number() OVER (PARTITION BY side, slice ORDER BY price DESC, ts) AS highest
                FROM (
                    SELECT *, (epoch_ms(ts) - {ms(start)}) * {buckets} // {span} AS slice
                    FROM ({query}) AS every_trade
                ) AS sliced
            ) AS ranked
            WHERE lowest = 1 OR highest = 1
        """
    rows = con.execute(
        f"SELECT epoch_ms(ts), side, price, qty FROM ({query}) AS drawn ORDER BY ts, side"
    ).fetchall()
    return PriceData(
        t=[float(t) for t, _, _, _ in rows],
        p=[float(p) for _, _, p, _ in rows],
        q=[float(q) for _, _, _, q in rows],
        s="".join(side[0] for _, side, _, _ in rows),
        buckets=buckets,
    )


def top_prices(
    con: duckdb.DuckDBPyConnection, symbol: str, start: datetime, end: datetime
) -> list[TopPrice]:
    """The heat map's cells: the 50 most frequent prices of each side, with trades and volume."""
    query = duckdb_sql("top_prices_by_side", symbol=symbol, start=start, end=end)
    return [
        TopPrice(side=side, price=plain(price), p=float(price), trades=n, volume=plain(volume))
        for side, price, n, volume in con.execute(
            f"SELECT side, price, trades, volume FROM ({query}) AS top"
        ).fetchall()
    ]


def bar_size_for(span: timedelta) -> timedelta:
    """The narrowest bar that fits ``span`` in ``MAX_BARS`` candles (the widest otherwise)."""
    return next((b for b in BAR_SIZES if span / b <= MAX_BARS), BAR_SIZES[-1])


def candles(
    con: duckdb.DuckDBPyConnection, symbol: str, hours: Sequence[datetime], size: timedelta
) -> tuple[list[Bar], str]:
    """The symbol's bars of ``size`` merged from ``ohlcv_1m`` or ``ohlcv_1h``, and where from.

    The bars of the rollup's view (what ``tradelake rollup`` wrote) come first; an hour of
    ``hours`` (those with trades) that it does not hold is rolled up on the spot by the same
    query. The bars are then merged to ``size`` (``quote_volume`` keeps a merged VWAP exact).
    """
    name = "ohlcv_1m" if size < HOUR else "ohlcv_1h"
    columns = f"{ROLLUP_COLUMNS[name][0].name}, {BAR_COLUMNS}"
    rows = []
    if con.execute("SELECT 1 FROM duckdb_views() WHERE view_name = ?", [name]).fetchall():
        rows = con.execute(f"SELECT {columns} FROM {name} WHERE symbol = ?", [symbol]).fetchall()
    rolled_up = {start.replace(minute=0, tzinfo=UTC) for start, *_ in rows}
    missing = [h for h in hours if h not in rolled_up]
    for hour in missing:
        query = duckdb_sql(name, **hour_params(symbol, hour))
        rows += con.execute(f"SELECT {columns} FROM ({query}) AS bars").fetchall()
    bars = sorted(
        (Bar(start.replace(tzinfo=UTC), *values) for start, *values in rows), key=lambda b: b.start
    )
    if not missing:
        source = f"from the {name} rollup"
    elif len(missing) < len(hours):
        source = f"{len(hours) - len(missing)} of {len(hours)} hours from the {name} rollup"
    else:
        source = f"{name} rolled up for this report (tradelake rollup writes it)"
    return merge(bars, size), source


def merge(bars: Sequence[Bar], size: timedelta) -> list[Bar]:
    """Consecutive ``bars`` (sorted by start) merged into bars of ``size`` from the epoch."""
    out: list[Bar] = []
    step = size.total_seconds()
    for b in bars:
        start = datetime.fromtimestamp(b.start.timestamp() // step * step, UTC)
        if out and out[-1].start == start:
            a = out[-1]
            out[-1] = Bar(
                start,
                a.open,
                max(a.high, b.high),
                min(a.low, b.low),
                b.close,
                a.volume + b.volume,
                a.quote_volume + b.quote_volume,
                a.trade_count + b.trade_count,
                a.buy_volume + b.buy_volume,
                a.sell_volume + b.sell_volume,
            )
        else:
            out.append(replace(b, start=start))
    return out


def candle_data(bars: Sequence[Bar], size: timedelta, source: str) -> CandleData:
    return CandleData(
        bar=int(size.total_seconds() * 1000),
        source=source,
        t=[ms(b.start) for b in bars],
        o=[float(b.open) for b in bars],
        h=[float(b.high) for b in bars],
        l=[float(b.low) for b in bars],
        c=[float(b.close) for b in bars],
        v=[float(b.volume) for b in bars],
        bv=[float(b.buy_volume) for b in bars],
        sv=[float(b.sell_volume) for b in bars],
        n=[b.trade_count for b in bars],
        vwap=[float(b.quote_volume / b.volume) for b in bars],
    )
