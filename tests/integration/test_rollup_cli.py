"""``tradelake rollup`` and ``tradelake query`` as a user runs them, on a real lake: rollup files
equal to an independent computation, reruns, late trades, ranges, and one-line errors."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytics_reference import (
    HOUR_13,
    HOUR_14,
    HOUR_16,
    NS_PER_MINUTE,
    SYMBOLS,
    Lake,
    at,
    bars,
    build_lake,
    completeness,
    top_prices_by_side,
    write,
)
from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.parquet_sink import arrow_type
from tradelake.analytics import ROLLUPS
from tradelake.cli import main
from tradelake.model import INCREMENTAL, Trade
from tradelake.partitions import NS_PER_HOUR
from tradelake.schema import ROLLUP_COLUMNS

pytestmark = pytest.mark.integration

SPANS = {"ohlcv_1m": NS_PER_MINUTE, "ohlcv_1h": NS_PER_HOUR}


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return build_lake(tmp_path / "lake", seed=3)


def rollup(lake: Path, *args: str) -> int:
    return main(["rollup", "--lake", str(lake), *args])


def rollup_files(lake: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted((lake / "rollups").rglob("*")) if p.is_file()}


def read_rollup(lake: Path, name: str) -> list[tuple[object, ...]]:
    """Every bar of rollup ``name`` read back from its files, symbol from the path."""
    schema = pa.schema([pa.field(c.name, arrow_type(c.type)) for c in ROLLUP_COLUMNS[name]])
    rows: list[tuple[object, ...]] = []
    for path in sorted((lake / "rollups" / name).rglob("*.parquet")):
        table = pq.read_table(path, partitioning=None)
        assert table.schema == schema  # the Glue table's columns: no symbol, types exact
        symbol = path.relative_to(lake / "rollups" / name).parts[0].removeprefix("symbol=")
        rows += [(symbol, *row.values()) for row in table.to_pylist()]
    return rows


def test_rollup_of_a_lake_with_a_file_delivered_twice_equals_an_independent_computation(
    lake: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rollup(lake.path) == 0
    assert "rolled up 6 symbol-hours" in capsys.readouterr().err
    trades = lake.trades  # each trade once, though a file and some trades are stored twice
    for name in ROLLUPS:
        expected = [bar for s in SYMBOLS for bar in bars(trades, s, SPANS[name])]
        assert read_rollup(lake.path, name) == expected
    layout = sorted(p.relative_to(lake.path).as_posix() for p in rollup_files(lake.path))
    assert "rollups/ohlcv_1h/symbol=BTCUSD/year=2025/month=11/day=27/hour=14/ohlcv_1h.parquet" in (
        layout
    )
    assert len([p for p in layout if p.endswith(".parquet")]) == 12  # 2 rollups, 2 symbols, 3 h


def test_a_rerun_writes_identical_files(lake: Lake) -> None:
    assert rollup(lake.path) == 0
    first = rollup_files(lake.path)
    assert rollup(lake.path) == 0
    assert rollup_files(lake.path) == first  # same names, same bytes, no temporary file left


def test_a_late_trade_is_picked_up_when_its_hour_is_rolled_up_again(lake: Lake) -> None:
    assert rollup(lake.path) == 0
    before = {p: p.stat().st_mtime_ns for p in rollup_files(lake.path)}
    late = Trade("BTCUSD", HOUR_14 + 1234, "sell", 10**17, 10**10, 0, HOUR_16, 1, INCREMENTAL)
    write(lake.path, [late])  # a new file in the hour partition rolled up already
    # the hourly run's look-back: the closed hours again, here only hour 14
    assert rollup(lake.path, "--from", "2025-11-27T14:00Z", "--to", "2025-11-27T14:59Z") == 0
    trades = [*lake.trades, late]
    for name in ROLLUPS:
        expected = [bar for s in SYMBOLS for bar in bars(trades, s, SPANS[name])]
        assert read_rollup(lake.path, name) == expected
    touched = {p for p, mtime in before.items() if p.stat().st_mtime_ns != mtime}
    assert {p.parent.name for p in touched} == {"hour=14"}
    assert len(touched) == 4  # hour 14 of each symbol, each rollup; nothing else rewritten


def test_a_run_reads_only_the_partitions_of_its_range(
    lake: Lake, capsys: pytest.CaptureFixture[str]
) -> None:
    hour_13 = next((lake.path / "trades" / "symbol=sBTCUSDT").rglob("hour=13"))
    (hour_13 / "zz-unreadable.parquet").write_bytes(b"not a Parquet file")
    assert rollup(lake.path, "--from", "2025-11-27T14:00:00+00:00") == 0
    assert "rolled up 4 symbol-hours" in capsys.readouterr().err
    assert rollup(lake.path) == 1  # hour 13 of sBTCUSDT is read now: one line, exit 1
    err = capsys.readouterr().err
    assert err.startswith("tradelake rollup: "), err
    assert err.count("\n") == 1, err


def test_the_rollup_views_read_back_the_bars(lake: Lake) -> None:
    with pytest.raises(Exception, match="ohlcv_1h"):  # no rollups yet: no view
        connect(lake.path).sql("SELECT * FROM ohlcv_1h")
    assert rollup(lake.path) == 0
    con = connect(lake.path)
    for name in ROLLUPS:
        described = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {name}").fetchall()]
        assert described[:2] == [
            ("symbol", "VARCHAR"),
            (ROLLUP_COLUMNS[name][0].name, "TIMESTAMP WITH TIME ZONE"),  # not hour=14's '14'
        ]
        got = con.sql(f"SELECT * FROM {name} ORDER BY 1, 2").fetchall()
        assert got == [bar for s in SYMBOLS for bar in bars(lake.trades, s, SPANS[name])]


def test_query_named_in_csv_and_json(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    start, end = at(HOUR_13 + 10**9), at(HOUR_16)
    argv = ["query", "--lake", str(lake.path), "--named", "completeness", "--format", "csv"]
    assert main([*argv, "--from", "2025-11-27T13:00:01", "--to", "2025-11-27T16:00:00Z"]) == 0
    got = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert got[0] == ["symbol", "hour", "trades", "gaps"]
    expected = completeness(lake.trades, lake.gaps, start, end)
    assert got[1:] == [
        [s, hour.replace(tzinfo=None).isoformat(), str(n), str(g)] for s, hour, n, g in expected
    ]

    argv = ["query", "--lake", str(lake.path), "--named", "top_prices_by_side", "--format", "json"]
    assert main([*argv, "--symbol", "sBTCUSDT"]) == 0  # default range: the whole lake
    rows = json.loads(capsys.readouterr().out)
    assert all(isinstance(r["price"], str) for r in rows)  # exact: not a JSON double
    got = [(r["side"], Decimal(r["price"]), r["trades"], Decimal(r["volume"])) for r in rows]
    assert got == top_prices_by_side(lake.trades, "sBTCUSDT", at(HOUR_13), at(HOUR_16))


def test_query_sql_as_before(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["query", "--lake", str(lake.path), "--format", "json"]
    assert main([*argv, "SELECT min(ts) AS first, count(*) AS n FROM trades"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row == {
        "first": at(min(t.ts_ns for t in lake.trades) // 10**6 * 10**6).isoformat(),
        "n": len(lake.trades),
    }
    assert main(["query", "--lake", str(lake.path), "SELECT nonsense FROM trades"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tradelake query: "), err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["query"], "one of the arguments sql --named is required"),
        (["query", "SELECT 1", "--named", "completeness"], "not allowed with"),
        (["query", "--named", "nope"], "invalid choice"),
        (["query", "--format", "xml", "SELECT 1"], "invalid choice"),
        (["query", "--named", "top_prices_by_side"], "needs --symbol"),
        (["query", "--named", "completeness", "--symbol", "BTCUSD"], "no --symbol"),
        (["query", "--named", "price_side_over_time", "--symbol", "B$D"], "not a Phemex symbol"),
        (["query", "SELECT 1", "--from", "2025-11-27"], "goes with --named"),
        (
            ["query", "--named", "completeness", "--from", "2025-11-28", "--to", "2025-11-27"],
            "before --to",
        ),
        (["rollup", "--from", "yesterday"], "not an ISO time"),
        (["rollup", "--from", "2025-11-27T15:00", "--to", "2025-11-27T14:00"], "before --to"),
        (["rollup", "--to", "2025-11-27T14:00:00.000001"], "finer than the lake's milliseconds"),
    ],
)
def test_a_bad_argument_gets_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert says in err


def test_an_empty_lake_rolls_up_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rollup(tmp_path) == 0
    assert "rolled up 0 symbol-hours" in capsys.readouterr().err
    assert not (tmp_path / "rollups").exists()


def test_from_and_to_are_utc_unless_they_say(lake: Lake) -> None:
    """14:30+01:00 is 13:30 UTC: hour 13 is in range; 14:00 naive is 14:00 UTC, the end."""
    assert rollup(lake.path, "--from", "2025-11-27T14:30+01:00", "--to", "2025-11-27T14:00") == 0
    hours = {p.parent.name for p in rollup_files(lake.path) if p.suffix == ".parquet"}
    assert hours == {"hour=13"}
