"""The lake's cursor file and gap ledger: round trips, absence, corruption, atomicity."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tradelake.adapters.lake_files import (
    FileCursorStore,
    JsonlGapLedger,
    read_gaps,
    write_atomically,
)
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.cursor import Cursor, SymbolCursor
from tradelake.model import INCREMENTAL, Gap, Trade, parse_fixed
from tradelake.schema import GAP_COLUMNS


def files(lake: Path) -> list[Path]:
    return sorted(p for p in lake.rglob("*") if p.is_file())


def a_cursor() -> Cursor:
    return Cursor(
        {
            "BTCUSD": SymbolCursor(
                1_764_252_000_123_456_789,
                {("buy", parse_fixed("32991.5"), 40 * 10**10): 2, ("sell", 1, 1): 1},
            ),
            "BTCUSDT": SymbolCursor(1_764_252_000_000_000_000, {}),
        }
    )


def test_absent_cursor_loads_empty(tmp_path: Path) -> None:
    assert FileCursorStore(tmp_path).load() == Cursor()
    assert files(tmp_path) == []


def test_cursor_round_trip_replaces_atomically(tmp_path: Path) -> None:
    store = FileCursorStore(tmp_path)
    store.save(Cursor({"BTCUSD": SymbolCursor(1, {})}))
    store.save(a_cursor())
    assert FileCursorStore(tmp_path).load() == a_cursor()
    assert files(tmp_path) == [tmp_path / "_state" / "cursor.json"]


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '{"version": 2}',
        '{"version": 1, "symbols": {}}',
        '{"version": 2, "symbols": {"X": {}}}',
        '{"version": 2, "symbols": {"X": {"ts_ns": 1764252000123456789, "fills": []}}}',
        "\xff",
    ],
)
def test_corrupt_cursor_names_the_file_and_what_to_do(tmp_path: Path, text: str) -> None:
    store = FileCursorStore(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match="is corrupt") as raised:
        store.load()
    assert str(store.path) in str(raised.value)
    assert "move it aside" in str(raised.value)


def test_failed_rename_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "x" / "state.json"
    write_atomically(target, b"old")

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk said no")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk said no"):
        write_atomically(target, b"new")
    assert files(tmp_path) == [target]
    assert target.read_bytes() == b"old"


def test_a_version_1_cursor_file_says_it_is_no_longer_read(tmp_path: Path) -> None:
    store = FileCursorStore(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"version": 1, "symbols": {"BTCUSD": {"ts_ns": 1, "fills": []}}}')
    with pytest.raises(ValueError, match="version 1 is no longer read") as raised:
        store.load()
    assert str(store.path) in str(raised.value)
    assert "move it aside" in str(raised.value)


def test_the_cursor_file_holds_ts_ns_as_a_string(tmp_path: Path) -> None:
    store = FileCursorStore(tmp_path)
    store.save(a_cursor())
    saved = json.loads(store.path.read_text())
    assert saved["version"] == 2
    assert saved["symbols"]["BTCUSD"]["ts_ns"] == "1764252000123456789"


class FsyncLog:
    """Wraps ``os.fsync`` to record what each call made durable, as an existing path."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, candidates: Path) -> None:
        self.candidates = candidates
        self.synced: list[tuple[int, int]] = []
        real = os.fsync

        def fsync(fd: int) -> None:
            st = os.fstat(fd)
            self.synced.append((st.st_dev, st.st_ino))
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    def paths(self) -> list[Path]:
        """The fsynced files and directories in call order (a since-renamed file by its name)."""
        by_inode = {(p.stat().st_dev, p.stat().st_ino): p for p in self.candidates.rglob("*")}
        by_inode[(self.candidates.stat().st_dev, self.candidates.stat().st_ino)] = self.candidates
        return [by_inode[i] for i in self.synced]


def test_new_directories_are_made_durable_deepest_first_before_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    target = root / "a" / "b" / "c" / "d" / "file.bin"
    log = FsyncLog(monkeypatch, root)
    write_atomically(target, b"data")
    a, b, c, d = root / "a", root / "a" / "b", root / "a" / "b" / "c", target.parent
    # each new level's entry is in its parent: c holds d, b holds c, and a, the first ancestor
    # that already existed, holds b; then the file itself, then its rename in d
    assert log.paths() == [c, b, a, target, d]

    log.synced.clear()
    write_atomically(target.with_name("second.bin"), b"more")
    assert log.paths() == [target.with_name("second.bin"), d], "existing directories: no extra"


def test_a_new_partition_is_durable_when_the_sink_acknowledges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    log = FsyncLog(monkeypatch, lake)
    trade = Trade("BTCUSD", 1_764_252_000_123_456_789, "buy", 1, 1, 0, 0, 0, INCREMENTAL)
    sink = ParquetSink(lake)
    sink.add([trade])
    assert sink.flush() == [trade]
    (written,) = lake.rglob("*.parquet")
    levels = [lake]
    for name in ["trades", "symbol=BTCUSD", "year=2025", "month=11", "day=27", "hour=14"]:
        levels.append(levels[-1] / name)
    assert written.parent == levels[-1]
    # hour=14 is in day=27, ..., trades is in the lake: all durable before flush returns
    assert log.paths() == [*reversed(levels[:-1]), written, levels[-1]]


GAPS = [
    Gap(
        "BTCUSD",
        1_764_252_000_000_000_000,
        1_764_252_001_000_000_000,
        1_764_252_005_000_000_000,
        "snapshot_short",
    ),
    Gap("sBTCUSDT", 5, 5, 1_764_252_006_000_000_000, "out_of_order"),
]


def test_gap_ledger_round_trip_one_file_per_record(tmp_path: Path) -> None:
    ledger = JsonlGapLedger(tmp_path)
    ledger.record([])
    assert files(tmp_path) == []
    ledger.record(GAPS)
    later = Gap("BTCUSD", 7, 9, 1_764_252_999_000_000_000, "snapshot_short")
    ledger.record([later])
    assert read_gaps(tmp_path) == [*GAPS, later]
    written = files(tmp_path)
    assert [p.parent.name for p in written] == ["gaps", "gaps"]
    assert all(p.suffix == ".jsonl" for p in written)
    first = json.loads(written[0].read_text().splitlines()[0])
    assert list(first) == [c.name for c in GAP_COLUMNS]


def test_no_gaps_in_a_new_lake(tmp_path: Path) -> None:
    assert read_gaps(tmp_path) == []


@pytest.mark.parametrize(
    "line",
    [
        "{oops",
        '{"symbol": "BTCUSD"}',
        '{"symbol": "A", "from_ts_ns": 1.5, "to_ts_ns": 2, "detected_ns": 3, "reason": "r"}',
        '{"symbol": "A", "from_ts_ns": "1", "to_ts_ns": 2, "detected_ns": 3, "reason": "r"}',
    ],
)
def test_bad_gap_line_is_reported_with_its_place(tmp_path: Path, line: str) -> None:
    ledger = JsonlGapLedger(tmp_path)
    ledger.record(GAPS)
    bad = tmp_path / "gaps" / "9999999999999999999-bad.jsonl"
    bad.write_text(json.dumps(GAPS[0]._asdict()) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=f"{bad}:2"):
        read_gaps(tmp_path)
