"""DuckDB over the local lake: typed views over empty and non-empty lakes, and the summary."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb

from tradelake.adapters.duckdb_lake import SymbolSummary, connect, summary
from tradelake.adapters.lake_files import JsonlGapLedger
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.model import INCREMENTAL, Gap, Trade, parse_fixed

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
