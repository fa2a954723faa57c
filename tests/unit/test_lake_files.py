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
from tradelake.cursor import Cursor, SymbolCursor
from tradelake.model import Gap, parse_fixed
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
    ["{not json", "[1, 2]", '{"version": 2}', '{"version": 1, "symbols": {"X": {}}}', "\xff"],
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
