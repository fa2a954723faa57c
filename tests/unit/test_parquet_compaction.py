"""Compaction of the local lake on real Parquet files read back with real DuckDB: the trades view
reads the same rows after, each closed partition is one file, open hours and single files are
left alone, failures between steps lose nothing, and a capture's file written meanwhile stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analytics_reference import (
    HOUR_13,
    HOUR_14,
    HOUR_15,
    HOUR_16,
    build_lake,
    read,
    read_once,
    stored,
    write,
)
from tradelake.adapters import parquet_compaction
from tradelake.adapters.parquet_compaction import (
    DEFAULT_GRACE_S,
    LEFTOVER_AGE_S,
    Compacted,
    compact_lake,
    plan,
)
from tradelake.adapters.parquet_sink import TRADE_SCHEMA, ParquetSink, trade_table
from tradelake.model import INCREMENTAL, SNAPSHOT, Trade, trade_key
from tradelake.partitions import partition_prefix

LATER = HOUR_16 + 10**18  # long after every hour of the test lakes
GRACE_NS = DEFAULT_GRACE_S * 10**9


def t(ts_ns: int, recv_ns: int, *, seq: int = 1, source: str = INCREMENTAL) -> Trade:
    """A trade whose identity is its ``ts_ns``; copies differ in receipt, seq and source."""
    price = 329_915 * 10**9 + ts_ns % 7
    return Trade("BTCUSD", ts_ns, "buy", price, 10**10, 0, recv_ns, seq, source)


def parquet_files(lake: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(lake.rglob("*.parquet"))}


def hidden(lake: Path) -> list[Path]:
    return [p for p in lake.rglob(".*") if p.is_file()]


def test_the_trades_view_reads_the_same_rows_and_each_partition_is_one_file(
    tmp_path: Path,
) -> None:
    lake = build_lake(tmp_path / "lake", seed=3)  # duplicates: a byte copy, later snapshot copies
    before = read(lake.path)
    keys_before = {trade_key(x) for x in lake.stored}
    assert stored(lake.path) == len(lake.stored) > len(before)

    done, open_hours = compact_lake(lake.path, LATER)

    assert read(lake.path) == before
    assert {r[5] for r in read(lake.path)} == keys_before
    assert stored(lake.path) == len(before) == len(lake.trades)  # no stored copy left
    assert sum(c.duplicates for c in done) == len(lake.stored) - len(lake.trades)
    assert open_hours == 0
    directories = [p.parent for p in lake.path.rglob("*.parquet")]
    assert len(directories) == len(set(directories)) == len(done) == 6  # 2 symbols x 3 hours
    assert all(pq.read_schema(p).equals(TRADE_SCHEMA) for p in lake.path.rglob("*.parquet"))
    assert hidden(lake.path) == []


def test_rows_keep_their_received_order_and_the_copy_the_view_reads(tmp_path: Path) -> None:
    h = HOUR_14
    a1, a2, a3 = t(h + 10, 100), t(h + 20, 100), t(h + 30, 200)
    early_copy_of_a3 = a3._replace(recv_ns=150, seq=0, source=SNAPSHOT)  # read first: recv 150
    same_time_copy_of_a2 = a2._replace(seq=0)  # recv_ns ties, seq 0 < 1: read first
    b1 = t(h + 5, 300, source=SNAPSHOT)  # a late trade: B's name sorts before A's
    write(tmp_path, [a1, a2, a3])  # flush A
    write(tmp_path, [b1, early_copy_of_a3, t(h + 40, 300)])  # flush B, received after A
    write(tmp_path, [t(h + 10, 400), same_time_copy_of_a2])  # flush C: a copy of a1, then a2's
    assert len(parquet_files(tmp_path)) == 3

    [done], _ = compact_lake(tmp_path, LATER)

    expected = [a1, b1, early_copy_of_a3, t(h + 40, 300), same_time_copy_of_a2]
    [path] = parquet_files(tmp_path)
    assert pq.read_table(path).equals(trade_table(expected))
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "SNAPPY"
    assert path.name.startswith(f"{h + 5:019d}-")  # the sink's name: first ts_ns
    assert done == Compacted(partition_prefix("BTCUSD", h), 3, 8, 5)
    every_copy = [a1, a2, a3, b1, early_copy_of_a3, t(h + 40, 300), t(h + 10, 400)]
    every_copy.append(same_time_copy_of_a2)
    assert sorted(expected) == sorted(read_once(every_copy))  # the reference's pick, too


def test_only_hours_that_ended_a_grace_ago_are_compacted(tmp_path: Path) -> None:
    for hour in (HOUR_13, HOUR_14, HOUR_15):
        write(tmp_path, [t(hour + 1, hour + 2)])
        write(tmp_path, [t(hour + 3, hour + 4)])
    current = {p: b for p, b in parquet_files(tmp_path).items() if "hour=15" in str(p)}
    hour_14_closes = HOUR_15 + GRACE_NS

    assert len(plan(tmp_path, hour_14_closes - 1).due) == 1  # hour 13 only
    assert plan(tmp_path, hour_14_closes - 1).open_hours == 2
    done, open_hours = compact_lake(tmp_path, hour_14_closes)  # while hour 15 is written

    assert [c.partition for c in done] == [
        partition_prefix("BTCUSD", HOUR_13),
        partition_prefix("BTCUSD", HOUR_14),
    ]
    assert open_hours == 1
    assert {p: b for p, b in parquet_files(tmp_path).items() if "hour=15" in str(p)} == current


def test_a_late_file_in_a_compacted_hour_is_merged_by_the_next_run(tmp_path: Path) -> None:
    write(tmp_path, [t(HOUR_14 + 1, HOUR_14 + 2)])
    write(tmp_path, [t(HOUR_14 + 3, HOUR_14 + 4)])
    compact_lake(tmp_path, LATER)
    once = parquet_files(tmp_path)
    assert compact_lake(tmp_path, LATER) == ([], 0)  # one file: nothing to do, not rewritten
    assert parquet_files(tmp_path) == once

    # a snapshot after a reconnect, hours later: a copy and a trade the capture had missed
    late = [t(HOUR_14 + 3, HOUR_16, source=SNAPSHOT), t(HOUR_14 + 5, HOUR_16, source=SNAPSHOT)]
    write(tmp_path, late)
    [done], _ = compact_lake(tmp_path, LATER)

    assert (done.files_before, done.rows_before, done.duplicates) == (2, 4, 1)
    [path] = parquet_files(tmp_path)
    assert pq.read_table(path)["ts_ns"].to_pylist() == [HOUR_14 + 1, HOUR_14 + 3, HOUR_14 + 5]
    assert pq.read_table(path)["source"].to_pylist() == [INCREMENTAL, INCREMENTAL, SNAPSHOT]


def test_one_symbol_only(tmp_path: Path) -> None:
    lake = build_lake(tmp_path / "lake", seed=5)
    other = {p: b for p, b in parquet_files(lake.path).items() if "symbol=sBTCUSDT" in str(p)}

    done, _ = compact_lake(lake.path, LATER, symbol="BTCUSD")

    assert {c.partition.split("/")[1] for c in done} == {"symbol=BTCUSD"}
    assert {p: b for p, b in parquet_files(lake.path).items() if "sBTCUSDT" in str(p)} == other


def test_a_file_of_another_schema_stops_the_run_and_changes_nothing(tmp_path: Path) -> None:
    write(tmp_path, [t(HOUR_14 + 1, HOUR_14 + 2)])
    [good] = parquet_files(tmp_path)
    pq.write_table(
        trade_table([t(HOUR_14 + 3, 0)]).drop_columns(["seq"]), good.parent / "x.parquet"
    )
    files = parquet_files(tmp_path)

    with pytest.raises(ValueError, match=r"x\.parquet is not a trades file of schema\.py"):
        compact_lake(tmp_path, LATER)

    assert parquet_files(tmp_path) == files


@pytest.mark.parametrize("step", ["parquet_bytes", "stage", "publish"])
def test_a_failure_before_the_rename_leaves_the_partition_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    lake = build_lake(tmp_path / "lake", seed=3)
    files, before = parquet_files(lake.path), read(lake.path)

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(parquet_compaction, step, fail)
    with pytest.raises(OSError, match="No space left"):
        compact_lake(lake.path, LATER)

    assert parquet_files(lake.path) == files
    assert hidden(lake.path) == []  # the staged file is removed
    assert read(lake.path) == before


def test_a_failure_while_deleting_leaves_copies_that_the_next_run_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = build_lake(tmp_path / "lake", seed=3)
    before = read(lake.path)
    deleted: list[Path] = []
    real_unlink = Path.unlink

    def unlink_one_then_fail(self: Path, missing_ok: bool = False) -> None:
        if self.suffix == ".parquet" and deleted:
            raise OSError(5, "Input/output error")
        deleted.append(self)
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink_one_then_fail)
    with pytest.raises(OSError, match="Input/output"):
        compact_lake(lake.path, LATER)
    monkeypatch.undo()

    assert read(lake.path) == before  # the new file and the old ones but one: copies, hidden
    assert stored(lake.path) > len(before)
    compact_lake(lake.path, LATER)
    assert read(lake.path) == before
    assert stored(lake.path) == len(before)


def test_a_file_a_capture_writes_meanwhile_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, [t(HOUR_14 + 1, HOUR_14 + 2)])
    write(tmp_path, [t(HOUR_14 + 3, HOUR_14 + 4)])
    late = [t(HOUR_14 + 3, HOUR_16, source=SNAPSHOT), t(HOUR_14 + 9, HOUR_16, source=SNAPSHOT)]
    real_publish = parquet_compaction.publish

    def capture_flushes_then_publish(staged: Path, path: Path) -> None:
        sink = ParquetSink(tmp_path)  # a capture's flush lands after the listing
        sink.add(late)
        sink.flush()
        real_publish(staged, path)

    monkeypatch.setattr(parquet_compaction, "publish", capture_flushes_then_publish)
    [done], _ = compact_lake(tmp_path, LATER)
    monkeypatch.undo()

    assert done.files_before == 2
    assert len(parquet_files(tmp_path)) == 2  # the merged file and the capture's
    ts = [HOUR_14 + 1, HOUR_14 + 3, HOUR_14 + 9]
    assert [r[0] for r in read(tmp_path)] == ts
    compact_lake(tmp_path, LATER)
    assert len(parquet_files(tmp_path)) == 1
    assert [r[0] for r in read(tmp_path, "SELECT ts_ns FROM trades_stored ORDER BY 1")] == ts


def test_only_staged_files_an_hour_old_are_deleted(tmp_path: Path) -> None:
    write(tmp_path, [t(HOUR_14 + 1, HOUR_14 + 2)])
    write(tmp_path, [t(HOUR_14 + 3, HOUR_14 + 4)])
    directory = tmp_path / partition_prefix("BTCUSD", HOUR_14)
    crashed, live = directory / ".a.parquet.0badc0de.tmp", directory / ".b.parquet.0000beef.tmp"
    crashed.write_bytes(b"left by a run that died")
    live.write_bytes(b"a writer about to rename it")
    an_hour_ago = time.time() - LEFTOVER_AGE_S - 1
    os.utime(crashed, (an_hour_ago, an_hour_ago))

    [done], _ = compact_lake(tmp_path, LATER)

    assert done.leftovers == 1
    assert hidden(tmp_path) == [live]
