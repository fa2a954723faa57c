"""``tradelake compact`` as a user runs it, a compaction killed at each step (a real process
exit: no cleanup runs), and a capture writing into the hour being compacted, on real lakes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from analytics_reference import HOUR_14, HOUR_16, build_lake, read, read_once, stored, write
from tradelake.adapters.parquet_compaction import LEFTOVER_AGE_S, compact_lake
from tradelake.adapters.parquet_sink import TRADE_SCHEMA, ParquetSink, trade_table
from tradelake.cli import main
from tradelake.model import SNAPSHOT, Trade
from tradelake.partitions import partition_prefix

pytestmark = pytest.mark.integration

LATER = HOUR_16 + 10**18


def parquet_files(lake: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(lake.rglob("*.parquet"))}


def test_prints_each_partition_and_a_total_and_leaves_the_current_hour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = build_lake(tmp_path / "lake", seed=3)
    now = time.time_ns()
    this_hour = [
        t._replace(symbol="BTCUSD", ts_ns=now - i, recv_ns=now)
        for i, t in enumerate(lake.stored[:2])
    ]
    write(lake.path, this_hour[:1])
    write(lake.path, this_hour[1:])
    current = parquet_files(lake.path / partition_prefix("BTCUSD", now))
    assert len(current) == 2
    files_before = len(parquet_files(lake.path))

    assert main(["compact", "--lake", str(lake.path)]) == 0

    out, err = capsys.readouterr()
    hour_14 = partition_prefix("BTCUSD", HOUR_14)
    lines = out.splitlines()
    assert len(lines) == 6  # 2 symbols x hours 13-15; not the current hour
    assert f"{hour_14}: 3 files -> 1, " in out  # its file, a byte copy, later snapshot copies
    duplicates = len(lake.stored) - len(lake.trades)
    assert err == (
        f"compacted 6 partitions of {lake.path}/: {files_before - 2} files -> 6,"
        f" {len(lake.trades):,} rows kept, {duplicates:,} duplicates removed in"
        f" {err.split(' in ')[1].split(' s;')[0]} s; 1 hour partition still open"
        " (not ended 10 min ago)\n"
    )
    assert {p: b for p, b in parquet_files(lake.path).items() if p in current} == current
    assert main(["compact", "--lake", str(lake.path)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"compacted 0 partitions of {lake.path}/: 0 files -> 0,")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grace-minutes", "-5"], "argument --grace-minutes: '-5' is not a whole number"),
        (["--symbol", "BTCUSD,sBTCUSDT"], "argument --symbol: one symbol, not 'BTCUSD,sBTCUSDT'"),
        (["--lake"], "argument --lake: expected one argument"),
    ],
)
def test_a_bad_argument_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["compact", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tradelake compact: {message}")
    assert err.count("\n") == 1


def test_no_lake_and_a_foreign_file_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compact", "--lake", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err == (
        f"tradelake compact: no lake at {tmp_path / 'nowhere'}/: give --lake the directory a"
        " capture wrote (or run tradelake demo)\n"
    )
    lake = build_lake(tmp_path / "lake", seed=3)
    directory = lake.path / partition_prefix("BTCUSD", HOUR_14)
    foreign = directory / "foreign.parquet"
    pq.write_table(trade_table(lake.stored[:1]).drop_columns(["source"]), foreign)

    assert main(["compact", "--lake", str(lake.path), "--symbol", "BTCUSD"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tradelake compact: {foreign} is not a trades file of schema.py")
    assert err.count("\n") == 1


CRASH = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from tradelake.adapters import parquet_compaction

    step, lake = sys.argv[1], Path(sys.argv[2])
    publish, unlink = parquet_compaction.publish, Path.unlink

    def crash(*args, **kwargs):
        os._exit(3)

    def publish_then_crash(staged, path):
        publish(staged, path)
        os._exit(3)

    def unlink_once_then_crash(self, missing_ok=False):
        if self.suffix == ".parquet":
            Path.unlink = crash
        unlink(self, missing_ok=missing_ok)

    if step == "before rename":
        parquet_compaction.publish = crash
    elif step == "after rename":
        parquet_compaction.publish = publish_then_crash
    else:
        Path.unlink = unlink_once_then_crash
    parquet_compaction.compact_lake(lake, int(sys.argv[3]))
    """
)


@pytest.mark.parametrize("step", ["before rename", "after rename", "after one delete"])
def test_a_compaction_killed_at_any_step_leaves_every_trade_readable(
    tmp_path: Path, step: str
) -> None:
    lake = build_lake(tmp_path / "lake", seed=3)
    before = read(lake.path)
    files = parquet_files(lake.path)

    killed = subprocess.run(
        [sys.executable, "-c", CRASH, step, str(lake.path), str(LATER)], check=False
    )

    assert killed.returncode == 3
    assert read(lake.path) == before
    leftovers = list(lake.path.rglob(".*.tmp"))
    if step == "before rename":
        assert parquet_files(lake.path) == files
        [leftover] = leftovers  # staged and fsynced, but no reader's glob matches it
        assert pq.read_schema(leftover).equals(TRADE_SCHEMA)
        an_hour_ago = time.time() - LEFTOVER_AGE_S - 1
        os.utime(leftover, (an_hour_ago, an_hour_ago))
    else:
        assert leftovers == []
        now = parquet_files(lake.path)
        assert set(now) - set(files), "the compacted file is in place"
        # beside every old file, or all but the one deleted before the crash (which one that is
        # depends on the files' random names: count them, not their rows)
        assert len(set(files) - set(now)) == (0 if step == "after rename" else 1)
    done, _ = compact_lake(lake.path, LATER)
    assert read(lake.path) == before
    assert stored(lake.path) == len(before)
    assert list(lake.path.rglob(".*.tmp")) == []
    assert sum(c.leftovers for c in done) == len(leftovers)


def test_a_capture_writing_into_the_hours_being_compacted_loses_nothing(tmp_path: Path) -> None:
    lake = build_lake(tmp_path / "lake", seed=3)
    # a capture delivering late trades (snapshot copies and new ones) into the same hours
    late = [
        Trade(
            "BTCUSD", HOUR_14 + i * 10**9, "sell", 10**14 + i, 10**10, 0, HOUR_16 + i, i, SNAPSHOT
        )
        for i in range(150)
    ]
    late += [t._replace(recv_ns=HOUR_16 + 10**12, source=SNAPSHOT) for t in lake.stored[::7]]
    done = threading.Event()

    def capture() -> None:
        sink = ParquetSink(lake.path)
        for i in range(0, len(late), 3):
            sink.add(late[i : i + 3])
            sink.flush()
        done.set()

    writer = threading.Thread(target=capture)
    writer.start()
    runs = 0
    while not done.is_set() or runs == 0:
        compact_lake(lake.path, LATER)
        runs += 1
    writer.join()
    compact_lake(lake.path, LATER)

    every_copy = lake.stored + late
    rows = read(lake.path, "SELECT symbol, ts_ns, trade_key, recv_ns, seq, source FROM trades")
    expected = read_once(every_copy)
    assert sorted((r[1], r[3], r[4], r[5]) for r in rows) == sorted(
        (x.ts_ns, x.recv_ns, x.seq, x.source) for x in expected
    )
    assert stored(lake.path) == len(expected)
    directories = [p.parent for p in lake.path.rglob("*.parquet")]
    assert len(directories) == len(set(directories)) == 6  # one file a partition
