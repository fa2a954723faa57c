"""Local rollups: the SQL of ``analytics.ROLLUPS`` run by DuckDB, its results kept in the lake.

Each rollup runs once per symbol and hour partition of ``trades``, on that partition alone (the
SQL filters the five partition keys; the connection's ``trades_stored`` is bound to the
partition's directory, ``duckdb_lake.bind_trades``, so DuckDB does not list the whole lake for
every query), and its bars go to
``<lake>/rollups/<name>/symbol=…/year=…/month=…/day=…/hour=…/<name>.parquet``: the S3 layout,
with the columns and types of ``schema.ROLLUP_COLUMNS`` (as the Glue tables and Athena's UNLOAD
have them), without ``symbol``, which the path holds.

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

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from tradelake.adapters.duckdb_lake import bind_trades, connect
from tradelake.adapters.lake_files import write_atomically
from tradelake.adapters.parquet_sink import arrow_type, parquet_bytes
from tradelake.analytics import ROLLUPS, duckdb_sql, hour_params
from tradelake.catalog import ROLLUPS_PREFIX, NotAPartitionError, Route, partition_of
from tradelake.partitions import TRADES_PREFIX, partition_prefix
from tradelake.schema import ROLLUP_COLUMNS

HOUR = timedelta(hours=1)


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

    ``start`` and ``end`` are aware datetimes; either may be None for no bound.
    """
    con = connect(lake)
    files = []
    for symbol, hour in lake_hours(lake):
        if (start is None or hour + HOUR > start) and (end is None or hour < end):
            bind_trades(
                con, lake / partition_prefix(symbol, _ns(hour))
            )  # its files, not the lake's
            files += [rollup_hour(con, lake, name, symbol, hour) for name in ROLLUPS]
    return files


def _ns(hour: datetime) -> int:
    return int(hour.timestamp()) * 10**9


def rollup_hour(
    con: duckdb.DuckDBPyConnection, lake: Path, name: str, symbol: str, hour: datetime
) -> Path:
    """Run rollup ``name`` over one hour partition and replace its file; return the file."""
    bars = con.sql(duckdb_sql(name, **hour_params(symbol, hour))).to_arrow_table()
    schema = pa.schema([pa.field(c.name, arrow_type(c.type)) for c in ROLLUP_COLUMNS[name]])
    table = f"{ROLLUPS_PREFIX}/{name}"
    directory = lake / partition_prefix(symbol, _ns(hour), table)
    path = directory / f"{name}.parquet"
    write_atomically(path, parquet_bytes(bars.drop_columns(["symbol"]).cast(schema)).to_pybytes())
    return path
