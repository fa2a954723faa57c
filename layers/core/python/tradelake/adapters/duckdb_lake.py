"""The local catalog and query engine: DuckDB views over the files of the lake.

DuckDB reads the Parquet files and JSON Lines in place (no load step), the way Athena reads S3
through Glue: ``trades_stored`` is every stored row with the partition keys as string columns
(Hive style, as in Glue), ``trades`` is the same with one row per ``trade_key`` (the view of
``sql/trades_view.sql``, as in Athena), ``gaps`` is the gap ledger, and ``ohlcv_1m`` and
``ohlcv_1h`` are the rollups. Column types come from ``schema.py``; each view casts to them so a
file written by another writer (Firehose's conversion, say) reads back with the same types.

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
from duckdb.sqltypes import INTEGER, VARCHAR

from tradelake.adapters.lake_files import GAPS_DIR
from tradelake.analytics import DECIMAL_DIVIDE, ROLLUPS, divide_decimals, duckdb_sql
from tradelake.catalog import ROLLUPS_PREFIX
from tradelake.partitions import TRADES_PREFIX
from tradelake.schema import (
    GAP_COLUMNS,
    PARTITION_KEYS,
    ROLLUP_COLUMNS,
    TRADE_COLUMNS,
    Column,
)

_DUCKDB_TYPES = {"bigint": "BIGINT", "string": "VARCHAR", "timestamp": "TIMESTAMPTZ"}
_SYMBOL_OF_FILE = r"/symbol=([^/]+)(/[^/]+){5}$"
"""The symbol level of a rollup file's path: then year, month, day, hour and the file name."""


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


def connect(lake: Path, *, bind: bool = True) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB over ``lake``: ``trades``, ``trades_stored``, ``gaps``, and rollups.

    ``trades`` is ``sql/trades_view.sql``, the view Athena has, translated by
    ``analytics.duckdb_sql``: a row_number() window over the partition keys, ``ts_ns`` and
    ``trade_key``, kept where it is 1. EXPLAIN shows DuckDB (2.0) pushing a filter on those
    columns through the window into the Parquet scan (``DISTINCT ON`` did not): partition
    filters prune files, ``ts_ns`` filters row groups (a filter on ``ts`` is applied after the
    window: filter on ``ts_ns`` or the hour for speed).

    ``ohlcv_1m`` and ``ohlcv_1h`` exist once ``tradelake rollup`` has written them: ``symbol``
    (from the path) then ``schema.ROLLUP_COLUMNS``, the columns of the SQL's result. They are
    read without Hive partitioning, whose ``hour`` would replace the bar column ``hour`` of
    ``ohlcv_1h``.

    The views glob the lake on every query, so files written later are seen, except that a
    view over a lake with no files yet is an empty stand-in (DuckDB fails on a glob that matches
    nothing): connect again, which is cheap, after the first files are written. Sessions run in
    UTC, the time zone of the partitions, and have ``analytics.DECIMAL_DIVIDE``.

    ``bind=False`` leaves ``trades_stored`` the empty stand-in, for a caller that binds its own
    partitions (``bind_trades``): binding ``trades/`` lists every file of the lake (~0.2 s).
    """
    lake = lake.absolute()
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.create_function(DECIMAL_DIVIDE, divide_decimals, [VARCHAR, VARCHAR, INTEGER], VARCHAR)
    trades = lake / TRADES_PREFIX
    if bind and any(trades.glob("**/*.parquet")):
        bind_trades(con, trades)
    else:
        con.execute(f"CREATE VIEW trades_stored AS {_empty(TRADE_COLUMNS + PARTITION_KEYS)}")
    con.execute(duckdb_sql("trades_view"))
    gaps = lake / GAPS_DIR
    if any(gaps.glob("*.jsonl")):
        source = (
            f"read_json({_literal(str(gaps / '*.jsonl'))}, format = 'newline_delimited',"
            f" columns = {_struct(GAP_COLUMNS)})"
        )
        con.execute(f"CREATE VIEW gaps AS SELECT {_typed(GAP_COLUMNS)} FROM {source}")
    else:
        con.execute(f"CREATE VIEW gaps AS {_empty(GAP_COLUMNS)}")
    for name in ROLLUPS:
        rollup = lake / ROLLUPS_PREFIX / name
        if any(rollup.glob("**/*.parquet")):
            source = (
                f"read_parquet({_literal(str(rollup / '**' / '*.parquet'))},"
                " hive_partitioning = false, filename = true)"
            )
            con.execute(
                f"CREATE VIEW {name} AS SELECT regexp_extract(filename,"
                f" {_literal(_SYMBOL_OF_FILE)}, 1) AS symbol, {_typed(ROLLUP_COLUMNS[name])}"
                f" FROM {source}"
            )
    return con


def bind_trades(con: duckdb.DuckDBPyConnection, *directories: Path) -> None:
    """(Re)define ``trades_stored``, and so ``trades``, over the Parquet files of ``directories``.

    ``connect`` binds the lake's ``trades/``; ``tradelake rollup`` binds the hour partitions of
    one batch (each directory must have a file), because DuckDB lists every file of the globs on
    each query: over a lake of thousands of files that alone was ~0.2 s a query, however well
    the partition filter then prunes them. Hive partitioning reads the keys from the whole path.
    """
    globs = ", ".join(_literal(str(directory / "**" / "*.parquet")) for directory in directories)
    source = (
        f"read_parquet([{globs}], hive_partitioning = true, hive_types = {_struct(PARTITION_KEYS)})"
    )
    con.execute(
        f"CREATE OR REPLACE VIEW trades_stored AS"
        f" SELECT {_typed(TRADE_COLUMNS + PARTITION_KEYS)} FROM {source}"
    )


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
