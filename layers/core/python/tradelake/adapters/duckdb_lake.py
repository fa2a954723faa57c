"""The local catalog and query engine: DuckDB views over the files of the lake.

DuckDB reads the Parquet files and JSON Lines in place (no load step), the way Athena reads S3
through Glue: ``trades_stored`` is every stored row with the partition keys as string columns
(Hive style, as in Glue), ``trades`` is the same with one row per ``trade_key``, and ``gaps`` is
the gap ledger. Column types come from ``schema.py``; each view casts to them so a file written
by another writer (Firehose's conversion, say) reads back with the same types.

A trade can be stored twice (a crash between publishing a file and saving the cursor, a
Firehose retry), always with the same ``trade_key``: the lake is written at least once and read
exactly once, through ``trades``. ``trades_stored`` is for audits: stored duplicates are
``count(*) FROM trades_stored`` minus ``count(*) FROM trades``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import duckdb

from tradelake.adapters.lake_files import GAPS_DIR
from tradelake.partitions import TRADES_PREFIX
from tradelake.schema import GAP_COLUMNS, PARTITION_KEYS, TRADE_COLUMNS, Column

_DUCKDB_TYPES = {"bigint": "BIGINT", "string": "VARCHAR", "timestamp": "TIMESTAMPTZ"}


class SymbolSummary(NamedTuple):
    """What the lake stores for one symbol; ``trades > trade_keys`` means stored duplicates."""

    symbol: str
    trades: int
    trade_keys: int
    first_ts: datetime
    last_ts: datetime
    hours: int


def duckdb_type(hive_type: str) -> str:
    """The DuckDB type of a Hive/Glue column type of ``schema.py``."""
    if hive_type.startswith("decimal("):
        return hive_type.upper()
    return _DUCKDB_TYPES[hive_type]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _typed(columns: tuple[Column, ...]) -> str:
    return ", ".join(f"CAST({c.name} AS {duckdb_type(c.type)}) AS {c.name}" for c in columns)


def _empty(columns: tuple[Column, ...]) -> str:
    return (
        "SELECT "
        + ", ".join(f"CAST(NULL AS {duckdb_type(c.type)}) AS {c.name}" for c in columns)
        + " WHERE false"
    )


def _struct(columns: tuple[Column, ...]) -> str:
    return (
        "{"
        + ", ".join(f"{_literal(c.name)}: {_literal(duckdb_type(c.type))}" for c in columns)
        + "}"
    )


DEDUP_KEYS = "symbol, year, month, day, hour, ts_ns, trade_key"
"""What ``trades`` partitions its de-duplication by: ``trade_key``, plus columns it determines.

A duplicate always lives in the same symbol/hour partition and has the same ``ts_ns`` (the key
contains the symbol and ``ts_ns``), so these extra keys change nothing in the result, but they
let DuckDB push a filter on any of them through the window into the Parquet scan: a filter on
``symbol``/``year``/``month``/``day``/``hour`` prunes files, one on ``ts_ns`` row groups (a
filter on ``ts`` is applied after the window: filter on ``ts_ns`` or the hour for speed).
"""
FIRST_RECEIVED = "recv_ns, seq, source"
"""Which stored copy ``trades`` keeps: the first received (every other column is in the key)."""


def connect(lake: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the views ``trades``, ``trades_stored`` and ``gaps`` over ``lake``.

    ``trades`` keeps one row per ``trade_key`` with ``QUALIFY row_number() = 1`` over
    ``DEDUP_KEYS``: EXPLAIN shows DuckDB (2.0) pushing partition filters through that window
    into the scan's file filters, which ``DISTINCT ON`` did not (it filtered after grouping);
    an ``arg_min`` GROUP BY pruned too but reorders the columns and picks each one separately.

    The views glob the lake on every query, so files written later are seen, except that a
    view over a lake with no files yet is an empty stand-in (DuckDB fails on a glob that matches
    nothing): connect again, which is cheap, after the first files are written. Sessions run in
    UTC, the time zone of the partitions.
    """
    lake = lake.absolute()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    trade_columns = TRADE_COLUMNS + PARTITION_KEYS
    trades = lake / TRADES_PREFIX
    if any(trades.glob("**/*.parquet")):
        source = (
            f"read_parquet({_literal(str(trades / '**' / '*.parquet'))}, hive_partitioning = true,"
            f" hive_types = {_struct(PARTITION_KEYS)})"
        )
        con.execute(f"CREATE VIEW trades_stored AS SELECT {_typed(trade_columns)} FROM {source}")
    else:
        con.execute(f"CREATE VIEW trades_stored AS {_empty(trade_columns)}")
    con.execute(
        "CREATE VIEW trades AS SELECT * FROM trades_stored QUALIFY row_number() OVER"
        f" (PARTITION BY {DEDUP_KEYS} ORDER BY {FIRST_RECEIVED}) = 1"
    )
    gaps = lake / GAPS_DIR
    if any(gaps.glob("*.jsonl")):
        source = (
            f"read_json({_literal(str(gaps / '*.jsonl'))}, format = 'newline_delimited',"
            f" columns = {_struct(GAP_COLUMNS)})"
        )
        con.execute(f"CREATE VIEW gaps AS SELECT {_typed(GAP_COLUMNS)} FROM {source}")
    else:
        con.execute(f"CREATE VIEW gaps AS {_empty(GAP_COLUMNS)}")
    return con


def summary(con: duckdb.DuckDBPyConnection) -> list[SymbolSummary]:
    """Per symbol: stored rows, distinct trade keys, first and last trade time, hour partitions.

    Read from ``trades_stored``, so that stored duplicates show as ``trades > trade_keys``.
    """
    rows = con.execute(
        """
        SELECT symbol, count(*), count(DISTINCT trade_key), min(ts), max(ts),
               count(DISTINCT concat_ws('/', year, month, day, hour))
        FROM trades_stored GROUP BY symbol ORDER BY symbol
        """
    ).fetchall()
    return [SymbolSummary(*row) for row in rows]
