"""DuckDB over the local lake: typed views, read exactly once, pruning, and the summary."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from tradelake.adapters.duckdb_lake import SymbolSummary, connect, summary
from tradelake.adapters.lake_files import JsonlGapLedger
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.cli import main
from tradelake.model import (
    FIXED_ONE,
    INCREMENTAL,
    SNAPSHOT,
    Gap,
    Trade,
    parse_fixed,
    trade_key,
)

HOUR_14 = 1_764_252_000_000_000_000  # 2025-11-27T14:00:00Z

TRADE_TYPES = [
    ("ts_ns", "BIGINT"),
    ("ts", "TIMESTAMP WITH TIME ZONE"),
    ("side", "VARCHAR"),
    ("price", "DECIMAL(28,10)"),
    ("qty", "DECIMAL(28,10)"),
    ("trade_key", "VARCHAR"),
    ("recv_ns", "BIGINT"),
    ("seq", "BIGINT"),
    ("source", "VARCHAR"),
    ("symbol", "VARCHAR"),
    ("year", "VARCHAR"),
    ("month", "VARCHAR"),
    ("day", "VARCHAR"),
    ("hour", "VARCHAR"),
]
GAP_TYPES = [
    ("symbol", "VARCHAR"),
    ("from_ts_ns", "BIGINT"),
    ("to_ts_ns", "BIGINT"),
    ("detected_ns", "BIGINT"),
    ("reason", "VARCHAR"),
]


def types(con: duckdb.DuckDBPyConnection, view: str) -> list[tuple[str, str]]:
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE {view}").fetchall()]


def trade(symbol: str, ts_ns: int, price: str, k: int = 0) -> Trade:
    return Trade(
        symbol, ts_ns, "sell", parse_fixed(price), parse_fixed("0.5"), k, 0, 1, INCREMENTAL
    )


def write(lake: Path, trades: list[Trade]) -> None:
    sink = ParquetSink(lake)
    sink.add(trades)
    sink.flush()


def test_empty_lake_has_typed_empty_views(tmp_path: Path) -> None:
    con = connect(tmp_path)
    assert types(con, "trades") == TRADE_TYPES
    assert types(con, "trades_stored") == TRADE_TYPES
    assert con.execute("SELECT count(*) FROM trades_stored").fetchone() == (0,)
    assert types(con, "gaps") == GAP_TYPES
    assert con.execute("SELECT count(*) FROM trades").fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM gaps").fetchone() == (0,)
    assert summary(con) == []


def test_views_over_a_lake_with_files(tmp_path: Path) -> None:
    lake = tmp_path / "o'lake"  # a quote in the path must not break the view's SQL
    write(
        lake,
        [
            trade("BTCUSD", HOUR_14 - 1, "32991.5"),
            trade("BTCUSD", HOUR_14, "32991.5"),
            trade("BTCUSD", HOUR_14, "32991.5", k=1),
            trade("sBTCUSDT", HOUR_14 + 7, "0.67562"),
        ],
    )
    gap = Gap("BTCUSD", HOUR_14 - 10, HOUR_14 - 2, HOUR_14 + 5, "snapshot_short")
    JsonlGapLedger(lake).record([gap])
    staged = lake / "trades" / "symbol=BTCUSD" / ".junk.parquet.tmp"
    staged.write_bytes(b"half a file")  # a temporary name is never read

    con = connect(lake)
    assert types(con, "trades") == TRADE_TYPES
    assert types(con, "gaps") == GAP_TYPES
    rows = con.execute(
        "SELECT symbol, hour, ts_ns, price FROM trades ORDER BY symbol, ts_ns, trade_key"
    ).fetchall()
    assert rows == [
        ("BTCUSD", "13", HOUR_14 - 1, Decimal("32991.5")),
        ("BTCUSD", "14", HOUR_14, Decimal("32991.5")),
        ("BTCUSD", "14", HOUR_14, Decimal("32991.5")),
        ("sBTCUSDT", "14", HOUR_14 + 7, Decimal("0.67562")),
    ]
    assert con.execute("SELECT * FROM gaps").fetchall() == [tuple(gap)]
    # decimal(28,10) keeps price * qty exact in decimal(38,20) (ARCHITECTURE.md §4)
    assert con.execute("SELECT typeof(price * qty) FROM trades LIMIT 1").fetchone() == (
        "DECIMAL(38,20)",
    )
    assert summary(con) == [
        SymbolSummary(
            "BTCUSD",
            3,
            3,
            datetime(2025, 11, 27, 13, 59, 59, 999000, tzinfo=UTC),
            datetime(2025, 11, 27, 14, tzinfo=UTC),
            2,
        ),
        SymbolSummary(
            "sBTCUSDT",
            1,
            1,
            datetime(2025, 11, 27, 14, tzinfo=UTC),
            datetime(2025, 11, 27, 14, tzinfo=UTC),
            1,
        ),
    ]


def test_files_written_after_connecting_are_seen(tmp_path: Path) -> None:
    write(tmp_path, [trade("BTCUSD", HOUR_14, "1")])
    con = connect(tmp_path)
    write(tmp_path, [trade("BTCUSD", HOUR_14, "1")])  # a redelivery: same trade_key
    [row] = summary(con)
    assert (row.trades, row.trade_keys) == (2, 1)


def stored_twice(lake: Path) -> list[Trade]:
    """Three trades (two identical fills among them) stored twice, as after a crash between
    publishing and saving the cursor: the next snapshot brings them again, received later."""
    price, forty = parse_fixed("32991.5"), parse_fixed("40")
    first = [
        Trade("BTCUSD", HOUR_14 + 5, "buy", price, forty, 0, 100, 7, INCREMENTAL),
        Trade("BTCUSD", HOUR_14 + 5, "buy", price, forty, 1, 100, 7, INCREMENTAL),
        Trade(
            "sBTCUSDT", HOUR_14 + 9, "sell", parse_fixed("0.5"), FIXED_ONE, 0, 101, 8, INCREMENTAL
        ),
    ]
    again = [t._replace(recv_ns=t.recv_ns + 10**9, seq=1, source=SNAPSHOT) for t in first]
    write(lake, again)  # the later copy is written first: which file is read first is no rule
    write(lake, first)
    return first


def test_trades_reads_each_stored_trade_once_and_trades_stored_every_copy(tmp_path: Path) -> None:
    first = stored_twice(tmp_path)
    assert len(list(tmp_path.rglob("*.parquet"))) == 4
    con = connect(tmp_path)
    rows = con.execute(
        "SELECT trade_key, recv_ns, seq, source FROM trades ORDER BY trade_key"
    ).fetchall()
    # one row per trade_key, and it is the first received copy
    assert rows == sorted((trade_key(t), t.recv_ns, t.seq, INCREMENTAL) for t in first)
    stored = con.execute("SELECT trade_key, count(*) FROM trades_stored GROUP BY 1").fetchall()
    assert sorted(stored) == sorted((trade_key(t), 2) for t in first)
    audit = "SELECT (SELECT count(*) FROM trades_stored) - (SELECT count(*) FROM trades)"
    assert con.execute(audit).fetchone() == (3,)
    assert con.execute("SELECT count(*) FROM trades WHERE symbol = 'BTCUSD'").fetchone() == (2,)
    assert con.execute(
        "SELECT count(*), sum(qty) FROM trades WHERE symbol = 'BTCUSD' AND hour = '14'"
    ).fetchone() == (2, Decimal(80))
    # the summary is of what is stored: the duplicates show as trades > trade_keys
    assert [(r.symbol, r.trades, r.trade_keys) for r in summary(con)] == [
        ("BTCUSD", 4, 2),
        ("sBTCUSDT", 2, 1),
    ]


def test_tradelake_query_counts_each_trade_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stored_twice(tmp_path)
    assert main(["query", "--lake", str(tmp_path), "SELECT count(*) FROM trades"]) == 0
    assert re.findall(r"\b\d+\b", capsys.readouterr().out) == ["3"]
    assert main(["query", "--lake", str(tmp_path), "SELECT count(*) FROM trades_stored"]) == 0
    assert re.findall(r"\b\d+\b", capsys.readouterr().out) == ["6"]


def test_a_partition_filter_on_trades_prunes_the_other_files(tmp_path: Path) -> None:
    stored_twice(tmp_path)
    other = next((tmp_path / "trades" / "symbol=sBTCUSDT").rglob("*.parquet")).parent
    (other / "zz-not-parquet.parquet").write_bytes(b"not a Parquet file")
    con = connect(tmp_path)
    # the de-duplicating window does not stop the filter from reaching the scan: the unreadable
    # file of the other symbol (or hour) is never opened
    for where in ("symbol = 'BTCUSD'", "symbol = 'BTCUSD' AND hour = '14'", "hour = '13'"):
        con.execute(f"SELECT count(*) FROM trades WHERE {where}").fetchall()
    for where in ("symbol = 'BTCUSD'", f"ts_ns >= {HOUR_14}"):  # ts_ns: row group statistics
        explain = f"EXPLAIN SELECT count(*) FROM trades WHERE {where}"
        plan = "\n".join(row[1] for row in con.execute(explain).fetchall())
        assert where in plan.split("READ_PARQUET", 1)[1], plan
    with pytest.raises(duckdb.Error):
        con.execute("SELECT count(*) FROM trades").fetchall()
