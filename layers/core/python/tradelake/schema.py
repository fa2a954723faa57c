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
