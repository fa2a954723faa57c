"""Local rollups: the SQL of ``analytics.ROLLUPS`` run by DuckDB, its results kept in the lake.

The bars of each symbol and hour partition of ``trades`` go to
``<lake>/rollups/<name>/symbol=…/year=…/month=…/day=…/hour=…/<name>.parquet``: the S3 layout,
with the columns and types of ``schema.ROLLUP_COLUMNS`` (as the Glue tables and Athena's UNLOAD
have them), without ``symbol``, which the path holds.

Athena runs each rollup once per hour partition. Run so here, a week of three symbols was
1,008 queries, each re-reading its hour's files and re-doing the ``trades`` view's
de-duplication (42 s for 10 M trades), so the hours are rolled up in batches: a symbol's hours
of a quarter of a UTC day (``BATCH_HOURS``). A batch's partitions are read and de-duplicated
once, into a temporary table (``load_batch``; ``trades_stored`` bound to those directories
only, ``duckdb_lake.bind_trades``, so DuckDB lists only their files, never a partition out of
range); each rollup runs once over it, as ``analytics.duckdb_rollup_sql``: the per-hour SQL
without its hour predicate; and its bars are split by hour. A bar lies inside one hour and a
trade is stored in its event hour's partition, so an hour's bars are the per-hour query's, and
its file the same bytes (``tests/integration/test_rollup_batches.py``). Batches run on every
core, one single-threaded DuckDB connection each (less CPU than one query on two threads):
about 150 MiB a core for 6 hours of 5.5 trades a second.

Overwrite: an hour's bars are one file with a fixed name, written under a temporary name and
renamed over the previous one (``lake_files.write_atomically``), so a reader sees the old bars
or the new ones, never none or both, and a crash leaves the old file. (Writing a temporary
directory and swapping it in would need a delete before the rename; deleting then writing, as
the AWS rollup must since S3 has no rename, leaves a moment with no bars.) The same trades give
the same bytes, so a rerun changes nothing, and a trade that arrived late in an hour rolled up
before is in its bars once the hour is rolled up again: the default range is every hour of the
lake.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import groupby
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tradelake.adapters.duckdb_lake import bind_trades, connect
from tradelake.adapters.lake_files import write_atomically
from tradelake.adapters.parquet_sink import arrow_type, parquet_bytes
from tradelake.analytics import ROLLUPS, duckdb_rollup_sql
from tradelake.catalog import ROLLUPS_PREFIX, NotAPartitionError, Route, partition_of
from tradelake.partitions import TRADES_PREFIX, partition_prefix
from tradelake.schema import ROLLUP_COLUMNS

HOUR = timedelta(hours=1)
BATCH_HOURS = 6
"""Hours of a symbol rolled up at once: 24 took as long on 10 M trades, with twice the memory."""
BATCH_NS = BATCH_HOURS * 3_600 * 10**9
BATCH_TABLE = "rollup_batch"
"""The temporary table of a batch's ``trades`` rows that ``duckdb_rollup_sql`` reads."""


def lake_hours(lake: Path) -> list[tuple[str, datetime]]:
    """Every ``(symbol, hour)`` partition of ``trades`` in ``lake``, in order, from its files."""
    routes = (Route(TRADES_PREFIX, TRADES_PREFIX),)
    hours: set[tuple[str, datetime]] = set()
    for path in (lake / TRADES_PREFIX).glob("**/*.parquet"):
        try:
            partition = partition_of(path.relative_to(lake).as_posix(), routes)
        except NotAPartitionError:
            continue  # not a trades file: nothing to roll up
        symbol, year, month, day, hour = partition.values
        hours.add((symbol, datetime(int(year), int(month), int(day), int(hour), tzinfo=UTC)))
    return sorted(hours)


def rollup_lake(
    lake: Path, start: datetime | None = None, end: datetime | None = None
) -> list[Path]:
    """Write every rollup of every hour partition overlapping ``[start, end)``; the files.

    ``start`` and ``end`` are aware datetimes; either may be None for no bound. The files are
    in ``lake_hours`` order, each hour's in ``ROLLUPS`` order. A batch's error (a file DuckDB
    cannot read) is raised once the batches under way are done; no other batch is begun.
    """
    hours = [
        (symbol, hour)
        for symbol, hour in lake_hours(lake)
        if (start is None or hour + HOUR > start) and (end is None or hour < end)
    ]
    batches = [
        (symbol, [hour for _, hour in group])
        for (symbol, _), group in groupby(hours, key=lambda sh: (sh[0], _ns(sh[1]) // BATCH_NS))
    ]
    if not batches:
        return []
    local = threading.local()
    connections: list[duckdb.DuckDBPyConnection] = []

    def run(batch: tuple[str, list[datetime]]) -> list[Path]:
        con: duckdb.DuckDBPyConnection | None = getattr(local, "con", None)
        if con is None:  # one connection a worker thread
            con = local.con = connect(lake, bind=False)
            con.execute("SET threads = 1")
            connections.append(con)
        return rollup_batch(con, lake, *batch)

    pool = ThreadPoolExecutor(min(len(batches), os.cpu_count() or 1))
    try:
        return [path for files in pool.map(run, batches) for path in files]
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, start no other batch
        for con in connections:
            con.close()


def rollup_batch(
    con: duckdb.DuckDBPyConnection, lake: Path, symbol: str, hours: Sequence[datetime]
) -> list[Path]:
    """Roll up ``symbol``'s hour partitions ``hours`` (each with a file) at once; the files."""
    bind_trades(con, *(lake / partition_prefix(symbol, _ns(hour)) for hour in hours))
    load_batch(con)
    files = {}
    for name in ROLLUPS:
        bars = con.sql(duckdb_rollup_sql(name, symbol, BATCH_TABLE)).to_arrow_table()
        bar_hours = pc.floor_temporal(bars.column(1), unit="hour")
        by_hour = {
            hour: bars.filter(pc.equal(bar_hours, pa.scalar(hour.replace(tzinfo=None))))
            for hour in hours
        }
        if sum(table.num_rows for table in by_hour.values()) != bars.num_rows:
            raise ValueError(f"{symbol}: a trade stored outside its event hour's partition")
        for hour, table in by_hour.items():
            files[hour, name] = write_bars(lake, name, symbol, hour, table)
    con.execute(f"DROP TABLE {BATCH_TABLE}")
    return [files[hour, name] for hour in hours for name in ROLLUPS]


def load_batch(con: duckdb.DuckDBPyConnection) -> None:
    """Fill ``BATCH_TABLE`` with the ``trades`` rows of the bound partitions, as the rollups read.

    The rows are ``trades_stored``'s if no ``trade_key`` is stored twice, for then each row is
    the first copy of its key in the view's window (``sql/trades_view.sql``): the view's rows
    without its window sort, about a quarter of the batch's time. Else they are read again via
    ``trades``. Left out are ``recv_ns``, ``seq`` and ``source``, which only pick among a key's
    copies, and the partition keys but ``symbol``, which only the relaxed predicate read; and
    ``ts`` is Glue's ``timestamp`` (UTC), the type the SQL is typed with, not the views'
    TIMESTAMPTZ: the same instants, and the rollups' windows, partitioned by
    ``date_trunc(…, ts)``, take half the time (no time zone to apply).
    """
    _fill(con, "trades_stored")
    if con.execute(_STORED_TWICE).fetchall() != [(0,)]:
        _fill(con, "trades")


_STORED_TWICE = f"SELECT count(*) - count(DISTINCT trade_key) FROM {BATCH_TABLE}"


def _fill(con: duckdb.DuckDBPyConnection, source: str) -> None:
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {BATCH_TABLE} AS SELECT"
        " * EXCLUDE (recv_ns, seq, source, year, month, day, hour)"
        " REPLACE (make_timestamp(epoch_us(ts)) AS ts)"
        f" FROM {source}"
    )


def _ns(hour: datetime) -> int:
    return int(hour.timestamp()) * 10**9


def write_bars(lake: Path, name: str, symbol: str, hour: datetime, bars: pa.Table) -> Path:
    """Replace the file of rollup ``name`` for ``symbol``'s ``hour`` with ``bars``; the file.

    ``bars`` is the rollup SQL's result for that hour: ``symbol`` then the Glue columns.
    """
    schema = pa.schema([pa.field(c.name, arrow_type(c.type)) for c in ROLLUP_COLUMNS[name]])
    directory = lake / partition_prefix(symbol, _ns(hour), f"{ROLLUPS_PREFIX}/{name}")
    path = directory / f"{name}.parquet"
    write_atomically(path, parquet_bytes(bars.drop_columns(["symbol"]).cast(schema)).to_pybytes())
    return path
