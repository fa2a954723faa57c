"""Compaction of the local lake: one Parquet file per closed hour partition, each trade once.

The local sink writes one file per symbol and event hour per flush (every 30 s for
``tradelake capture``), so a day of one symbol is thousands of files of a few hundred rows, and
a query pays per file. Compaction rewrites a partition's files as the one file a single flush of
all their trades would have written:

- **rows**: each file's rows in their order, the files in the order they were received (by the
  ``recv_ns`` of their first row, then name); of the copies of a ``trade_key`` only the one the
  ``trades`` view reads is kept (``sql/trades_view.sql``: smallest ``recv_ns``, ``seq``,
  ``source``), where it was. So ``trades`` reads the same rows before and after, and
  ``trades_stored`` loses exactly the stored duplicates;
- **schema**: ``parquet_sink.TRADE_SCHEMA`` (``schema.py``), SNAPPY, written by
  ``parquet_sink.parquet_bytes``; a file of another schema stops the run, untouched;
- **name**: the sink's (``<first ts_ns>-<uuid>.parquet``), so nothing else tells them apart.

Which hours. Only hours that ended at least ``grace_s`` before ``now_ns`` are compacted: the
hour being written gets a new file every flush, and compacting it would rewrite it again and
again. Closing is a matter of cost, never of correctness, because trades can still arrive for a
closed hour: a snapshot after a reconnect reaches back before the disconnect, possibly into an
hour that was compacted, and its file lands next to the compacted one. A partition is therefore
compacted whenever it holds two files or more, however often that happens; one file (a single
flush, or an earlier compaction) is left alone. The capture's cursor is not consulted: it cannot
rule out such a late file either, and a lake copied elsewhere, or a symbol no longer captured,
has no cursor that moves.

Atomic and crash-safe, concurrently with a capture. The files of a partition are listed once,
at the start; the new file is staged under a hidden temporary name and fsynced, renamed into
place and its directory fsynced (``lake_files.stage``, ``publish``); only then are exactly the
listed files deleted. A file a capture publishes meanwhile is not in the list and stays, for the
next run. A crash before the rename leaves the old files and a hidden ``.tmp`` that no reader's
``*.parquet`` glob matches (the next run of the partition deletes such leftovers once they are
an hour old: a staged file lives for milliseconds); after it, the new file and some of the old
ones: every trade stays readable, at worst stored twice, which ``trades`` hides and the next run
removes. A concurrent query sees the old files, or both, never neither; one that listed a file
just before it was deleted fails with "file not found" and can be rerun.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import uuid4

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tradelake.adapters.duckdb_rollup import lake_hours
from tradelake.adapters.lake_files import publish, stage
from tradelake.adapters.parquet_sink import TRADE_SCHEMA, parquet_bytes
from tradelake.partitions import NS_PER_HOUR, partition_prefix

DEFAULT_GRACE_S = 600
"""An hour is closed 10 minutes after it ends: 20 local flush ages (30 s), so its files are in."""

LEFTOVER_AGE_S = 3600
"""A staged ``.tmp`` file this old (by the wall clock) was left by a process that died."""

_READ_PICK = [(column, "ascending") for column in ("trade_key", "recv_ns", "seq", "source")]
"""Per trade_key, the copy ``sql/trades_view.sql`` reads comes first: its ORDER BY."""


@dataclass(frozen=True)
class Compacted:
    """One partition compacted: its directory (relative to the lake), files and rows."""

    partition: str
    files_before: int
    rows_before: int
    rows_after: int
    leftovers: int = 0
    """Staged files of crashed writers deleted (``LEFTOVER_AGE_S``)."""

    @property
    def duplicates(self) -> int:
        """Stored copies removed: rows before minus rows after."""
        return self.rows_before - self.rows_after


@dataclass(frozen=True)
class Plan:
    """The lake's partitions: the closed ones with files to merge, and how many are open."""

    due: list[tuple[str, list[Path]]]
    open_hours: int


def closed(hour_start: datetime, now_ns: int, grace_s: int) -> bool:
    """Whether the hour starting at ``hour_start`` ended at least ``grace_s`` before ``now_ns``."""
    end_ns = int(hour_start.timestamp()) * 10**9 + NS_PER_HOUR
    return end_ns + grace_s * 10**9 <= now_ns


def plan(
    lake: Path, now_ns: int, grace_s: int = DEFAULT_GRACE_S, symbol: str | None = None
) -> Plan:
    """The closed partitions of ``lake`` (of ``symbol``, or all) holding two files or more."""
    due: list[tuple[str, list[Path]]] = []
    open_hours = 0
    for sym, hour in lake_hours(lake):
        if symbol is not None and sym != symbol:
            continue
        if not closed(hour, now_ns, grace_s):
            open_hours += 1
            continue
        prefix = partition_prefix(sym, int(hour.timestamp()) * 10**9)
        files = sorted((lake / prefix).glob("*.parquet"))
        if len(files) > 1:
            due.append((prefix, files))
    return Plan(due, open_hours)


def compact_lake(
    lake: Path, now_ns: int, grace_s: int = DEFAULT_GRACE_S, symbol: str | None = None
) -> tuple[list[Compacted], int]:
    """Compact every closed partition of ``lake`` that has several files; also the open count."""
    work = plan(lake, now_ns, grace_s, symbol)
    return [compact_partition(lake, prefix, files) for prefix, files in work.due], work.open_hours


def compact_partition(lake: Path, prefix: str, files: Sequence[Path]) -> Compacted:
    """Replace ``files`` (of partition ``prefix``) by one file of their trades, each once."""
    tables = [_read(path) for path in files]
    received = sorted(
        zip(tables, files, strict=True),
        key=lambda pair: (_first_receipt(pair[0]), pair[1].name),
    )
    merged = pa.concat_tables([table for table, _ in received])
    kept = merged.take(read_once(merged))
    first = pc.min(kept["ts_ns"]).as_py()
    path = lake / prefix / f"{first:019d}-{uuid4().hex}.parquet"
    staged = stage(path, parquet_bytes(kept))
    try:
        publish(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    for merged_file in files:
        # Not fsynced: a deletion lost to a power cut leaves a duplicate, which the next run
        # removes, never a missing trade.
        merged_file.unlink(missing_ok=True)  # missing: another compaction took it
    leftovers = remove_leftovers(lake / prefix, time.time_ns() - LEFTOVER_AGE_S * 10**9)
    return Compacted(prefix, len(files), merged.num_rows, kept.num_rows, leftovers)


def remove_leftovers(directory: Path, before_ns: int) -> int:
    """Delete the staged files in ``directory`` last written before ``before_ns``; how many.

    Deleting a live writer's staged file could only make its rename fail, and a writer keeps
    what it failed to publish (``ParquetSink.flush``), so even a wrong guess loses nothing.
    """
    removed = 0
    for staged in directory.glob(".*.tmp"):
        try:
            if staged.stat().st_mtime_ns < before_ns:
                staged.unlink()
                removed += 1
        except FileNotFoundError:
            continue  # published or removed meanwhile
    return removed


def read_once(table: pa.Table) -> pa.Array:
    """Row indices of ``table`` keeping the copy of each trade_key the ``trades`` view reads.

    Indices are ascending, so taking them keeps the rows in their order.
    """
    position = pa.array(range(table.num_rows), pa.int64())
    ranked = table.select([name for name, _ in _READ_PICK]).append_column("position", position)
    order = pc.sort_indices(ranked, sort_keys=[*_READ_PICK, ("position", "ascending")])
    keys = table["trade_key"].take(order)
    if len(keys) < 2:
        return order
    differs = pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1))
    first_copy = pa.concat_arrays([pa.array([True]), differs.combine_chunks()])
    kept = order.filter(first_copy)
    return kept.take(pc.sort_indices(kept))


def _read(path: Path) -> pa.Table:
    table = pq.ParquetFile(path).read()
    if not table.schema.equals(TRADE_SCHEMA):
        raise ValueError(
            f"{path} is not a trades file of schema.py (its schema: {table.schema.names}):"
            " move it out of the lake, then compact again"
        )
    return table


def _first_receipt(table: pa.Table) -> int:
    return int(table["recv_ns"][0].as_py()) if table.num_rows else 0
