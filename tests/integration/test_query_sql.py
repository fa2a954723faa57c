"""Bad SQL in ``tradelake query`` (issue 9): one clear line, the right exit code, and the lake
untouched, whatever is typed — a syntax error, an unknown name, or a statement that writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tradelake.adapters.lake_files import FileCursorStore, JsonlGapLedger
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.cli import main
from tradelake.cursor import Cursor
from tradelake.model import INCREMENTAL, Gap, Trade, parse_fixed

pytestmark = pytest.mark.integration

START_NS = 1_795_737_600_000_000_000  # 2026-11-27T00:00Z
HOUR = "trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=00"


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """A small real lake: Parquet trades, a cursor and a gap."""
    path = tmp_path / "lake"
    trades = [
        Trade(
            "BTCUSD",
            START_NS + n,
            "buy",
            parse_fixed("100.5"),
            parse_fixed("1"),
            0,
            0,
            1,
            INCREMENTAL,
        )
        for n in range(10)
    ]
    sink = ParquetSink(path)
    sink.add(trades)
    sink.flush()
    cursor = Cursor()
    cursor.advance(trades)
    FileCursorStore(path).save(cursor)
    JsonlGapLedger(path).record([Gap("BTCUSD", 1, 2, START_NS, "stall")])
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` and a hash of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def query(lake: Path, sql: str) -> int:
    return main(["query", "--lake", str(lake), "--format", "csv", sql])


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("SELECT FROM WHERE", "Parser Error: syntax error at or near"),
        ("SELECT count(*) FROM trade", "Catalog Error: Table with name trade does not exist"),
        ("SELECT nope FROM trades", 'Binder Error: Referenced column "nope" not found'),
        ("DROP VIEW trades", "refused: DROP is not a query"),
        ("CREATE TABLE t AS SELECT * FROM trades", "refused: CREATE is not a query"),
        ("DELETE FROM trades", "refused: DELETE is not a query"),
        ("COPY trades TO '{lake}/" + HOUR + "/evil.parquet'", "refused: COPY is not a query"),
        ("COPY (SELECT 1) TO '{tmp}/out.csv'", "refused: COPY is not a query"),
        ("EXPORT DATABASE '{lake}/export'", "refused: EXPORT is not a query"),
        ("SELECT 1; COPY trades TO '{lake}/x.csv'", "refused: COPY is not a query"),
        ("EXPLAIN ANALYZE COPY trades TO '{lake}/x.csv'", "refused: this EXPLAIN is not a query"),
        ("ATTACH '{tmp}/other.duckdb' AS other", "refused: ATTACH is not a query"),
        ("INSTALL httpfs", "refused: LOAD is not a query"),
        ("LOAD httpfs", "refused: LOAD is not a query"),
        ("SET enable_external_access = true", "refused: SET is not a query"),
        ("PIVOT trades ON side", "refused: MULTI is not a query"),
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error"),
        ("SELECT * FROM read_parquet('{tmp}/outside.parquet')", "Permission Error"),
        ("SELECT * FROM read_parquet('{lake}/../outside.parquet')", "Permission Error"),
        ("SELECT * FROM 's3://bucket/key.parquet'", "Permission Error"),
    ],
)
def test_bad_sql_is_one_line_and_the_lake_is_untouched(
    lake: Path, capsys: pytest.CaptureFixture[str], sql: str, says: str
) -> None:
    tmp = lake.parent
    (tmp / "outside.parquet").write_bytes((next(lake.rglob("*.parquet"))).read_bytes())
    before, around = snapshot(lake), snapshot(tmp)
    assert query(lake, sql.format(lake=lake, tmp=tmp)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("tradelake query: "), captured.err
    assert says in captured.err
    assert captured.err.count("\n") == 1
    assert snapshot(lake) == before
    assert snapshot(tmp) == around


@pytest.mark.parametrize("sql", ["", "   ", ";", " -- only a comment\n;"])
def test_empty_sql_is_a_usage_error(
    lake: Path, capsys: pytest.CaptureFixture[str], sql: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        query(lake, sql)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "the SQL is empty" in err or "the SQL holds no statement" in err


@pytest.mark.parametrize(
    ("sql", "first_line"),
    [
        ("SELECT count(*) AS n FROM trades", "n"),
        ("WITH t AS (SELECT * FROM trades) SELECT count(*) AS n FROM t", "n"),
        ("FROM gaps SELECT symbol", "symbol"),
        ("DESCRIBE trades", "column_name,column_type,null,key,default,extra"),
        ("SHOW TABLES", "name"),
        ("EXPLAIN SELECT count(*) FROM trades", "explain_key,explain_value"),
        ("EXPLAIN ANALYZE SELECT count(*) FROM trades", "explain_key,explain_value"),
        ("SELECT 1 AS a; SELECT 2 AS b", "b"),
    ],
)
def test_reads_still_work(
    lake: Path, capsys: pytest.CaptureFixture[str], sql: str, first_line: str
) -> None:
    before = snapshot(lake)
    assert query(lake, sql) == 0
    assert capsys.readouterr().out.splitlines()[0] == first_line
    assert snapshot(lake) == before
