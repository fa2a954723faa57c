"""The analytics SQL: safe rendering, the Trino-to-DuckDB translation, and every query's result
equal to an independent computation (tests/analytics_reference.py) on a lake with a file
delivered twice, copies received later, identical fills, and trades at hour boundaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from hypothesis import given
from hypothesis import strategies as st

from analytics_reference import (
    HOUR_13,
    HOUR_14,
    HOUR_15,
    HOUR_16,
    NS_PER_MINUTE,
    SYMBOLS,
    Lake,
    at,
    bars,
    build_lake,
    completeness,
    dec,
    half_up,
    price_side_over_time,
    top_prices_by_side,
    write,
)
from tradelake.adapters.duckdb_lake import connect, duckdb_type
from tradelake.analytics import (
    QUERIES,
    READY_QUERIES,
    ROLLUPS,
    divide_decimals,
    duckdb_sql,
    hour_params,
    parameters,
    trino_sql,
)
from tradelake.model import INCREMENTAL, Gap, Trade
from tradelake.partitions import NS_PER_HOUR
from tradelake.schema import ROLLUP_COLUMNS

AT_14 = datetime(2025, 11, 27, 14, tzinfo=UTC)
RANGES = [
    (at(HOUR_13), at(HOUR_16)),  # whole hours
    (at(HOUR_13 + 1_800_123_000_000), at(HOUR_15)),  # ms inside an hour; ends on a boundary
    (at(HOUR_14 - 1_000_000), at(HOUR_15 + 1_000_000)),  # one ms either side of the hours
]
SPANS = {"ohlcv_1m": NS_PER_MINUTE, "ohlcv_1h": NS_PER_HOUR}


@pytest.fixture(scope="module", params=[1, 2])
def lake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return build_lake(tmp_path_factory.mktemp("lake"), request.param)


def utc(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """DuckDB's TIMESTAMP is a naive datetime in UTC: make it aware to compare."""
    return [
        tuple(v.replace(tzinfo=UTC) if isinstance(v, datetime) and not v.tzinfo else v for v in r)
        for r in rows
    ]


# --- the files and their rendering ----------------------------------------------------------


def test_every_sql_file_is_a_query_with_known_parameters() -> None:
    shipped = {p.name for p in files("tradelake").joinpath("sql").iterdir()}
    assert shipped == {f"{name}.sql" for name in QUERIES}
    assert set(ROLLUPS) | set(READY_QUERIES) | {"trades_view"} == set(QUERIES)
    assert {name: sorted(parameters(name)) for name in QUERIES} == {
        "trades_view": [],
        "ohlcv_1m": ["day", "hour", "month", "symbol", "year"],
        "ohlcv_1h": ["day", "hour", "month", "symbol", "year"],
        "top_prices_by_side": ["end", "start", "symbol"],
        "price_side_over_time": ["end", "start", "symbol"],
        "completeness": ["end", "start"],
    }


def test_ohlcv_1h_is_ohlcv_1m_by_the_hour() -> None:
    """Two files because Athena runs one per table; this keeps them one query."""
    minute = files("tradelake").joinpath("sql", "ohlcv_1m.sql").read_text()
    hour = files("tradelake").joinpath("sql", "ohlcv_1h.sql").read_text()
    assert hour == (
        minute.replace("One-minute", "One-hour")
        .replace("'minute'", "'hour'")
        .replace("AS minute,", "AS hour,")
    )


def test_parameters_are_rendered_as_literals_of_checked_values() -> None:
    sql = trino_sql("ohlcv_1m", **hour_params("sBTCUSDT", AT_14 + timedelta(minutes=59)))
    assert "symbol = 'sBTCUSDT' AND year = '2025' AND month = '11' AND day = '27'" in sql
    assert "hour = '14'" in sql
    plus_one = timezone(timedelta(hours=1))
    sql = trino_sql(
        "price_side_over_time",
        symbol="BTCUSD",
        start=datetime(2025, 11, 27, 15, 30, 0, 123000, tzinfo=plus_one),
        end=AT_14 + timedelta(hours=2),
    )
    assert "ts >= TIMESTAMP '2025-11-27 14:30:00.123'" in sql  # UTC
    assert "ts < TIMESTAMP '2025-11-27 16:00:00.000'" in sql
    for name in QUERIES:  # what Athena gets parses as Trino
        params = {"symbol": "BTCUSD", "start": AT_14, "end": AT_14 + timedelta(hours=1)}
        params |= hour_params("BTCUSD", AT_14)
        sqlglot.parse_one(trino_sql(name, **{p: params[p] for p in parameters(name)}), "trino")


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"symbol": "BT'; DROP", "start": AT_14, "end": AT_14}, "not a Phemex symbol"),
        ({"symbol": "BTCUSD", "start": AT_14, "end": datetime(2025, 11, 28)}, "time zone"),
        ({"symbol": "BTCUSD", "start": AT_14.replace(microsecond=1), "end": AT_14}, "millisec"),
        ({"symbol": "BTCUSD", "start": "2025-11-27", "end": AT_14}, "time zone"),
        ({"symbol": "BTCUSD", "start": AT_14}, "takes end, start, symbol, not start, symbol"),
        ({"symbol": "BTCUSD", "start": AT_14, "end": AT_14, "hour": "14"}, "takes"),
    ],
)
def test_bad_parameters_are_refused(params: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        trino_sql("top_prices_by_side", **params)


def test_partition_values_are_digits() -> None:
    params = hour_params("BTCUSD", AT_14) | {"hour": "1' OR '1"}
    with pytest.raises(ValueError, match="2 digits"):
        trino_sql("ohlcv_1m", **params)
    with pytest.raises(ValueError, match="time zone"):
        hour_params("BTCUSD", datetime(2025, 11, 27, 14))
    with pytest.raises(ValueError, match="no query 'nope'"):
        trino_sql("nope")


# --- the translation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dividend", "divisor", "scale", "quotient"),
    [
        ("1.00000000000000000000", "3.0000000000", 20, "0.33333333333333333333"),
        ("2.00000000000000000000", "3.0000000000", 20, "0.66666666666666666667"),
        ("0.5", "1", 1, "0.5"),
        ("5", "2", 0, "3"),  # half up
        ("-5", "2", 0, "-3"),  # half away from zero, as Trino
        ("7", "-2", 0, "-4"),
        ("0.0000000000", "7.0000000000", 10, "0.0000000000"),
    ],
)
def test_divide_decimals_rounds_as_trino(
    dividend: str, divisor: str, scale: int, quotient: str
) -> None:
    assert divide_decimals(dividend, divisor, scale) == quotient


@given(
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.integers(min_value=1, max_value=10**38 - 1),
    st.integers(min_value=0, max_value=20),
    st.integers(min_value=0, max_value=20),
)
def test_divide_decimals_is_the_exact_quotient_rounded_half_up(
    a: int, b: int, a_scale: int, b_scale: int
) -> None:
    scale = max(a_scale, b_scale)
    text = divide_decimals(f"{dec(a, a_scale):f}", f"{dec(b, b_scale):f}", scale)
    exact = Fraction(a, 10**a_scale) / Fraction(b, 10**b_scale)
    expected = half_up(abs(exact), scale)
    assert Decimal(text) == (expected if exact >= 0 else expected.copy_negate())
    assert len(text.partition(".")[2]) == scale


def test_divide_decimals_refuses_a_scale_trino_would_not_use() -> None:
    with pytest.raises(ValueError, match="scale 20 in Trino, not 10"):
        divide_decimals("1.00000000000000000000", "3.0000000000", 10)
    with pytest.raises(ZeroDivisionError):
        divide_decimals("1.0", "0.0", 1)


def test_integer_division_stays_integer_near_an_hour_boundary(tmp_path: Path) -> None:
    """Trino's bigint / bigint truncates; as a DOUBLE division, HOUR_15 - 1 ns rounds to
    HOUR_15 and the trade's hour would be 15: then the gap at HOUR_15 would count for hour 14."""
    write(tmp_path, [Trade("BTCUSD", HOUR_15 - 1, "buy", 1, 1, 0, 0, 0, INCREMENTAL)])
    from tradelake.adapters.lake_files import JsonlGapLedger

    JsonlGapLedger(tmp_path).record([Gap("BTCUSD", HOUR_15, HOUR_15, HOUR_16, "snapshot_short")])
    sql = duckdb_sql("completeness", start=at(HOUR_13), end=at(HOUR_16))
    assert "//" in sql
    rows = utc(connect(tmp_path).sql(sql).fetchall())
    assert rows == [("BTCUSD", at(HOUR_14), 1, 0)]


def test_a_decimal_division_must_be_cast_to_its_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradelake import analytics

    monkeypatch.setattr(analytics, "_text", lambda _: "SELECT sum(qty) / count(*) FROM trades")
    with pytest.raises(ValueError, match="cast the decimal division"):
        duckdb_sql("trades_view")


def test_rollup_sql_yields_the_rollup_columns(lake: Lake) -> None:
    """The SQL's result and schema.ROLLUP_COLUMNS (the Glue tables, the files) agree."""
    con = connect(lake.path)
    for name in ROLLUPS:
        sql = duckdb_sql(name, **hour_params("BTCUSD", AT_14))
        described = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {sql}").fetchall()]
        expected = [(c.name, duckdb_type(c.type)) for c in ROLLUP_COLUMNS[name]]
        # the SQL says TIMESTAMP (Athena's, naive UTC); the files hold it as UTC instants
        expected = [(n, "TIMESTAMP" if t == "TIMESTAMPTZ" else t) for n, t in expected]
        assert described == [("symbol", "VARCHAR"), *expected]


def test_a_rollup_reads_its_hour_partition_only(lake: Lake) -> None:
    con = connect(lake.path)
    files_total = len(list((lake.path / "trades").rglob("*.parquet")))
    plan = "\n".join(
        row[1]
        for row in con.execute(
            "EXPLAIN " + duckdb_sql("ohlcv_1m", **hour_params("BTCUSD", AT_14))
        ).fetchall()
    )
    scan = plan.split("READ_PARQUET", 1)[1]
    assert "symbol = 'BTCUSD'" in scan, plan
    assert "hour = '14'" in scan, plan  # year, month, day: one value in this lake
    # hour 14 of BTCUSD: the batch, its copy, and the later copies of some of its trades
    assert f"Scanning Files: 3/{files_total}" in scan, plan


# --- results equal to the independent computation -------------------------------------------


@pytest.mark.parametrize("name", ROLLUPS)
def test_each_rollup_equals_the_reference(lake: Lake, name: str) -> None:
    con = connect(lake.path)
    for symbol in SYMBOLS:
        expected = bars(lake.trades, symbol, SPANS[name])
        got = []
        for hour in range(HOUR_13, HOUR_16, NS_PER_HOUR):
            got += utc(con.sql(duckdb_sql(name, **hour_params(symbol, at(hour)))).fetchall())
        assert got == expected


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_each_ready_query_equals_the_reference(lake: Lake, start: datetime, end: datetime) -> None:
    con = connect(lake.path)
    trades = lake.trades
    for symbol in SYMBOLS:
        for name, reference in (
            ("top_prices_by_side", top_prices_by_side),
            ("price_side_over_time", price_side_over_time),
        ):
            got = con.sql(duckdb_sql(name, symbol=symbol, start=start, end=end)).fetchall()
            assert utc(got) == reference(trades, symbol, start, end), name
    got = con.sql(duckdb_sql("completeness", start=start, end=end)).fetchall()
    assert utc(got) == completeness(trades, lake.gaps, start, end)


def test_the_reference_lake_has_the_awkward_cases(lake: Lake) -> None:
    """Guards the test data: what the comparisons above are meant to cover is in it."""
    stored, trades = lake.stored, lake.trades
    assert len(stored) > len(trades)
    assert {t.k for t in trades} >= {0, 1, 2}
    assert {HOUR_14 - 1, HOUR_14, HOUR_15 - 1, HOUR_15} <= {t.ts_ns for t in trades}
    top = top_prices_by_side(trades, "BTCUSD", at(HOUR_13), at(HOUR_16))
    assert len(top) == 100  # 50 a side, out of 70 prices
    rows = completeness(trades, lake.gaps, at(HOUR_13), at(HOUR_16))
    assert [r[3] for r in rows] == [0, 1, 1, 2, 1, 1]  # BTCUSD 13-15, then sBTCUSDT 13-15
