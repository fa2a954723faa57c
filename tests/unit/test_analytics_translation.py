"""``analytics.duckdb_sql`` translates a query once and fills in its parameters: the same SQL.

The rollups run once per symbol and hour partition, so their translation is cached with marker
literals in place of the parameters (``analytics._translated``). These tests hold the cached
path to the full translation of the rendered statement, for every query it serves, and the
batch rollup (``duckdb_rollup_sql``) to one hour's SQL without its hour predicate.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tradelake import analytics
from tradelake.analytics import ROLLUPS, duckdb_rollup_sql, duckdb_sql, hour_params, trino_sql

PARTITIONS = [
    ("BTCUSD", datetime(2026, 11, 19, 3, tzinfo=UTC)),
    ("s1INCHUSDT", datetime(2025, 1, 31, 23, tzinfo=UTC)),
    ("BTCUSDT", datetime(2024, 2, 29, 0, tzinfo=UTC)),
]


@pytest.mark.parametrize("name", ROLLUPS)
@pytest.mark.parametrize(("symbol", "hour"), PARTITIONS)
def test_a_cached_rollup_is_the_full_translation(name: str, symbol: str, hour: datetime) -> None:
    params = hour_params(symbol, hour)
    sql = duckdb_sql(name, **params)
    assert sql == analytics._translate(trino_sql(name, **params))
    assert "tradelake_parameter" not in sql


def test_the_view_without_parameters_is_the_full_translation() -> None:
    assert duckdb_sql("trades_view") == analytics._translate(trino_sql("trades_view"))


def test_parameters_are_still_checked_on_the_cached_path() -> None:
    params = hour_params("BTCUSD", PARTITIONS[0][1])
    with pytest.raises(ValueError, match="not a Phemex symbol"):
        duckdb_sql("ohlcv_1m", **{**params, "symbol": "BTCUSD' OR 1=1 --"})
    with pytest.raises(ValueError, match="takes"):
        duckdb_sql("ohlcv_1m", symbol="BTCUSD")


@pytest.mark.parametrize("name", ROLLUPS)
@pytest.mark.parametrize(("symbol", "hour"), PARTITIONS)
def test_a_batch_rollup_is_the_hour_rollup_without_its_hour_predicate(
    name: str, symbol: str, hour: datetime
) -> None:
    """Everything but the hour predicate and the table read is the SQL of one hour."""
    params = hour_params(symbol, hour)
    one_hour = duckdb_sql(name, **params)
    for key in ("day", "hour", "month"):
        one_hour = one_hour.replace(f'"trades"."{key}" = \'{params[key]}\' AND ', "", 1)
    one_hour = one_hour.replace(f' AND "trades"."year" = \'{params["year"]}\'', "", 1)
    one_hour = one_hour.replace('FROM "trades" AS "trades"', 'FROM "batch" AS "trades"', 1)
    assert duckdb_rollup_sql(name, symbol, "batch") == one_hour
    assert "tradelake_parameter" not in one_hour


def test_a_batch_rollup_checks_what_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="not a Phemex symbol"):
        duckdb_rollup_sql("ohlcv_1m", "BTCUSD' OR 1=1 --", "batch")
    with pytest.raises(ValueError, match="not a table name"):
        duckdb_rollup_sql("ohlcv_1m", "BTCUSD", "batch; DROP TABLE trades")
    with pytest.raises(ValueError, match="no rollup"):
        duckdb_rollup_sql("completeness", "BTCUSD", "batch")
    text = analytics._text("ohlcv_1h").replace("AND hour = {hour}", "AND hour >= {hour}")
    monkeypatch.setattr(analytics, "_text", lambda name: text)
    with pytest.raises(ValueError, match="does not filter year, month, day, hour once each"):
        duckdb_rollup_sql("ohlcv_1h", "BTCUSD", "other_batch")  # another table: not cached
