"""The lake's tables, defined once (ARCHITECTURE.md §4).

Every writer and every catalog derives its schema from here: the local Parquet sink, the Glue
tables and the Firehose record format, so a column cannot drift between them. Types are written in
the Hive/Glue dialect that Athena and Firehose's Parquet conversion read.
"""

from __future__ import annotations

from typing import NamedTuple

from tradelake.model import FIXED_SCALE


class Column(NamedTuple):
    name: str
    type: str
    comment: str


DECIMAL = f"decimal(28,{FIXED_SCALE})"

TRADE_COLUMNS: tuple[Column, ...] = (
    Column("ts_ns", "bigint", "exchange timestamp, ns since epoch, exact"),
    Column("ts", "timestamp", "the same instant in ms"),
    Column("side", "string", "taker side: buy or sell"),
    Column("price", DECIMAL, "exact price in quote currency"),
    Column("qty", DECIMAL, "exact quantity: contracts (inverse) or base units"),
    Column("trade_key", "string", "deterministic id: symbol:ts_ns:side:price:qty:k"),
    Column("recv_ns", "bigint", "local receipt time, ns"),
    Column("seq", "bigint", "message sequence as sent (shared with other channels)"),
    Column("source", "string", "incremental or snapshot"),
)

PARTITION_KEYS: tuple[Column, ...] = (
    Column("symbol", "string", "Phemex symbol"),
    Column("year", "string", "event-time year, UTC"),
    Column("month", "string", "event-time month, 01-12"),
    Column("day", "string", "event-time day, 01-31"),
    Column("hour", "string", "event-time hour, 00-23"),
)

GAP_COLUMNS: tuple[Column, ...] = (
    Column("symbol", "string", "Phemex symbol"),
    Column("from_ts_ns", "bigint", "first ns of the interval in which trades may be missing"),
    Column("to_ts_ns", "bigint", "last ns of that interval, inclusive"),
    Column("detected_ns", "bigint", "when the capture noticed, ns"),
    Column("reason", "string", "why: snapshot_short, out_of_order, ..."),
)

# --- the rollups (sql/ohlcv_1m.sql, sql/ohlcv_1h.sql), written under rollups/<name>/ -----------
# One file per symbol and event hour; the file holds these columns (not `symbol`, which is the
# partition). On AWS the UNLOAD casts every column to exactly these types, so the Parquet files
# and the Glue tables agree whatever types the SQL's expressions would produce.

VOLUME = f"decimal(38,{FIXED_SCALE})"
"""A sum of quantities: what Trino's sum() of a ``DECIMAL`` gives."""
QUOTE = f"decimal(38,{2 * FIXED_SCALE})"
"""A sum of ``price * qty`` (exact, 18 integer digits, ARCHITECTURE.md §4.1), and the vwap
divided from it (Trino's decimal division keeps the larger scale, rounding half up)."""


def _ohlcv(bar: str, span: str) -> tuple[Column, ...]:
    return (
        Column(bar, "timestamp", f"the {span} bar's start, UTC"),
        Column("open", DECIMAL, "price of the bar's first trade (by ts_ns, then trade_key)"),
        Column("high", DECIMAL, "highest price"),
        Column("low", DECIMAL, "lowest price"),
        Column("close", DECIMAL, "price of the bar's last trade (by ts_ns, then trade_key)"),
        Column("volume", VOLUME, "sum of qty"),
        Column("quote_volume", QUOTE, "sum of price * qty"),
        Column("vwap", QUOTE, "quote_volume / volume"),
        Column("trade_count", "bigint", "trades, each trade_key once"),
        Column("buy_volume", VOLUME, "sum of qty of taker buys"),
        Column("sell_volume", VOLUME, "sum of qty of taker sells"),
    )


ROLLUP_COLUMNS: dict[str, tuple[Column, ...]] = {
    "ohlcv_1m": _ohlcv("minute", "one-minute"),
    "ohlcv_1h": _ohlcv("hour", "one-hour"),
}

ROLLUP_PARTITION_KEYS: dict[str, tuple[Column, ...]] = {
    "ohlcv_1m": PARTITION_KEYS,
    # Athena refuses a partition key named like a column, and ohlcv_1h has the column `hour`:
    # its last key is `hour_of_day`. The S3 path still says hour=HH (a Glue partition carries
    # its own location, so the key's name need not be the path's).
    "ohlcv_1h": (
        *PARTITION_KEYS[:-1],
        Column("hour_of_day", "string", "event-time hour, 00-23 (the path's hour=HH)"),
    ),
}
