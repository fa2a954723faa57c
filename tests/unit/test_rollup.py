"""The rollup job's pure core: which hours, which prefixes, the UNLOAD text, and the run's order."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlglot

from tradelake import rollup
from tradelake.adapters.s3_state import S3Prefixes
from tradelake.catalog import Added, Failure, Partition
from tradelake.config import ConfigError, RollupConfig
from tradelake.rollup import (
    QueryOutcome,
    RollupFailedError,
    RollupReport,
    Target,
    closed_hours,
    hour_expression,
    hours_between,
    roll_up,
    run,
    unload_sql,
)
from tradelake.schema import ROLLUP_COLUMNS

BUCKET = "lake"


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def test_closed_hours_are_the_last_ones_that_ended_oldest_first() -> None:
    assert closed_hours(utc(27, 15, 15), 3) == [utc(27, 12), utc(27, 13), utc(27, 14)]
    assert closed_hours(utc(27, 15), 1) == [utc(27, 14)]
    assert closed_hours(utc(28, 0, 5), 2) == [utc(27, 22), utc(27, 23)]
    cet = timezone(timedelta(hours=1))
    assert closed_hours(datetime(2026, 11, 27, 16, 15, tzinfo=cet), 1) == [utc(27, 14)]
    with pytest.raises(ValueError, match="no time zone"):
        closed_hours(datetime(2026, 11, 27, 15), 1)


def test_hours_between_takes_whole_hours_that_ended() -> None:
    now = utc(27, 15, 15)
    assert hours_between(utc(27, 12, 30), utc(27, 14), now) == [utc(27, 12), utc(27, 13)]
    assert hours_between(utc(27, 13), utc(28, 0), now) == [utc(27, 13), utc(27, 14)]
    assert hours_between(utc(27, 15), utc(27, 16), now) == []


def test_a_target_s_prefix_partition_and_name() -> None:
    target = Target("ohlcv_1h", "sBTCUSDT", utc(1, 9))
    assert target.prefix == "rollups/ohlcv_1h/symbol=sBTCUSDT/year=2026/month=11/day=01/hour=09/"
    assert target.partition(BUCKET) == Partition(
        "ohlcv_1h",
        ("sBTCUSDT", "2026", "11", "01", "09"),
        f"s3://{BUCKET}/{target.prefix}",
    )
    assert str(target) == "ohlcv_1h sBTCUSDT 2026-11-01T09Z"


def test_the_glue_expression_selects_one_hour() -> None:
    assert (
        hour_expression(utc(2, 3))
        == "year = '2026' AND month = '11' AND day = '02' AND hour = '03'"
    )


@pytest.mark.parametrize("name", sorted(ROLLUP_COLUMNS))
def test_the_unload_is_valid_trino_around_the_rendered_rollup(name: str) -> None:
    target = Target(name, "BTCUSD", utc(27, 14))
    sql = unload_sql(target, BUCKET)
    match = re.fullmatch(
        r"UNLOAD \(\n(.*)\n\)\nTO '(.*)'\nWITH \(format = 'PARQUET', compression = 'SNAPPY'\)",
        sql,
        re.DOTALL,
    )
    assert match is not None
    select, location = match.groups()
    assert location == f"s3://{BUCKET}/{target.prefix}"
    tree = sqlglot.parse_one(select, read="trino")
    assert [e.alias_or_name for e in tree.expressions] == [c.name for c in ROLLUP_COLUMNS[name]]
    casts = {e.alias: e.this.to.sql("trino").lower() for e in tree.expressions}
    assert casts == {c.name: c.type.replace(",", ", ") for c in ROLLUP_COLUMNS[name]}


def test_a_trailing_semicolon_or_comment_does_not_break_the_wrapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rollup, "trino_sql", lambda name, **_: "SELECT 1 AS minute -- note\n;\n")
    monkeypatch.setitem(rollup.ROLLUP_COLUMNS, "tiny", (ROLLUP_COLUMNS["ohlcv_1m"][0],))
    sql = unload_sql(Target("tiny", "BTCUSD", utc(27, 14)), BUCKET)
    select = sql.split("\n)\nTO ")[0].removeprefix("UNLOAD (\n")
    assert sqlglot.parse_one(select, read="trino").expressions[0].alias == "minute"


class FakeEngine:
    """Records starts and waits; ``states`` says how a query whose text holds a key ends."""

    def __init__(self, log: list[str], states: dict[str, str] | None = None) -> None:
        self.log, self.states = log, states or {}
        self.sql: dict[str, str] = {}

    def start(self, sql: str) -> str:
        query_id = f"q{len(self.sql)}"
        self.sql[query_id] = sql
        self.log.append(f"start {_where(sql)}")
        return query_id

    def wait(self, query_id: str) -> QueryOutcome:
        sql = self.sql[query_id]
        self.log.append(f"wait {_where(sql)}")
        state = next((s for key, s in self.states.items() if key in sql), "SUCCEEDED")
        return QueryOutcome(query_id, state, "" if state == "SUCCEEDED" else "boom", 1000)


def _where(sql: str) -> str:
    found = re.search(r"TO 's3://[^/]+/(\S+)'", sql)
    return found.group(1) if found else "view"


class FakePrefixes:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def delete_prefix(self, prefix: str) -> int:
        self.log.append(f"delete {prefix}")
        return 0


class FakeCatalog:
    def __init__(
        self, log: list[str], symbols: dict[datetime, list[str]], refuse: str = ""
    ) -> None:
        self.log, self.symbols, self.refuse = log, symbols, refuse

    def partition_values(self, table: str, expression: str) -> list[tuple[str, ...]]:
        assert table == "trades_stored"
        hour = next(h for h in self.symbols if hour_expression(h) == expression)
        # Each symbol twice: a symbol is rolled up once however many partitions name it.
        return [(s, "y", "m", "d", "h") for s in self.symbols[hour] * 2]

    def add_partitions(self, table: str, partitions: Sequence[Partition]) -> Added:
        self.log += [f"register {p.location.removeprefix(f's3://{BUCKET}/')}" for p in partitions]
        failed = tuple(
            Failure(p, "AccessDeniedException", "no")
            for p in partitions
            if self.refuse and self.refuse in p.location
        )
        return Added(len(partitions) - len(failed), 0, failed)


def job(log: list[str], catalog: FakeCatalog, engine: FakeEngine, **kwargs: object) -> RollupReport:
    return roll_up(
        [utc(27, 13), utc(27, 14)],
        bucket=BUCKET,
        trades_table="trades_stored",
        engine=engine,
        prefixes=FakePrefixes(log),
        catalog=catalog,
        **kwargs,
    )


def test_each_target_is_deleted_before_its_unload_and_registered_after_it_succeeded() -> None:
    log: list[str] = []
    catalog = FakeCatalog(log, {utc(27, 13): ["sBTCUSDT", "BTCUSD"], utc(27, 14): []})
    report = job(log, catalog, FakeEngine(log), concurrency=3)

    p = "rollups/{}/symbol={}/year=2026/month=11/day=27/hour=13/".format
    first, second = (
        [p("ohlcv_1m", "BTCUSD"), p("ohlcv_1h", "BTCUSD"), p("ohlcv_1m", "sBTCUSDT")],
        [p("ohlcv_1h", "sBTCUSDT")],
    )
    assert log == [
        "start view",
        "wait view",
        *(step for where in first for step in (f"delete {where}", f"start {where}")),
        *(f"wait {where}" for where in first),
        *(f"register {where}" for where in (first[0], first[2], first[1])),  # one call a table
        *(step for where in second for step in (f"delete {where}", f"start {where}")),
        *(f"wait {where}" for where in second),
        *(f"register {where}" for where in second),
    ]
    assert [str(t) for t in report.written] == [
        "ohlcv_1m BTCUSD 2026-11-27T13Z",
        "ohlcv_1h BTCUSD 2026-11-27T13Z",
        "ohlcv_1m sBTCUSDT 2026-11-27T13Z",
        "ohlcv_1h sBTCUSDT 2026-11-27T13Z",
    ]
    assert (report.queries, report.bytes_scanned, report.created) == (5, 5000, 4)
    report.raise_for_failures()  # nothing failed


def test_failures_are_collected_and_the_rest_goes_on() -> None:
    log: list[str] = []
    catalog = FakeCatalog(
        log,
        {utc(27, 13): ["BTCUSD"], utc(27, 14): ["BTCUSD"]},
        refuse="ohlcv_1h/symbol=BTCUSD/year=2026/month=11/day=27/hour=14",
    )
    engine = FakeEngine(
        log, {"ohlcv_1m/symbol=BTCUSD/year=2026/month=11/day=27/hour=13": "CANCELLED"}
    )
    report = job(log, catalog, engine)

    assert [(f.what, f.state) for f in report.failures] == [
        ("ohlcv_1m BTCUSD 2026-11-27T13Z", "CANCELLED"),
        ("ohlcv_1h BTCUSD 2026-11-27T14Z", "AccessDeniedException"),
    ]
    assert "register rollups/ohlcv_1m/symbol=BTCUSD/year=2026/month=11/day=27/hour=13/" not in log
    assert len(report.written) == 2
    first = r"ohlcv_1m BTCUSD 2026-11-27T13Z: CANCELLED boom \(query q\d+\)"
    with pytest.raises(RollupFailedError, match=rf"2 rollup\(s\) failed, the first: {first}$"):
        report.raise_for_failures()


def test_a_failed_view_stops_the_run_before_anything_is_deleted() -> None:
    log: list[str] = []
    catalog = FakeCatalog(log, {utc(27, 13): ["BTCUSD"], utc(27, 14): []})
    report = job(log, catalog, FakeEngine(log, {"CREATE OR REPLACE VIEW": "FAILED"}))
    assert log == ["start view", "wait view"]
    assert [(f.what, f.state) for f in report.failures] == [("trades view", "FAILED")]


def test_out_of_time_leaves_the_rest_not_started() -> None:
    log: list[str] = []
    catalog = FakeCatalog(log, {utc(27, 13): ["BTCUSD", "sBTCUSDT"], utc(27, 14): []})
    ticks = iter([False, True])
    report = job(log, catalog, FakeEngine(log), concurrency=1, out_of_time=lambda: next(ticks))
    assert len(report.written) == 1
    assert [f.state for f in report.failures] == ["NOT_STARTED"] * 3


def test_run_with_no_target_does_nothing() -> None:
    log: list[str] = []
    report = run(
        [],
        bucket=BUCKET,
        engine=FakeEngine(log),
        prefixes=FakePrefixes(log),
        catalog=FakeCatalog(log, {}),
        report=RollupReport(),
    )
    assert (log, report.written, report.failures) == ([], [], [])


def test_rollup_config_from_the_environment_and_for_a_stage() -> None:
    env = {"DATA_BUCKET": "b", "GLUE_DATABASE": "d", "ATHENA_WORKGROUP": "w"}
    config = RollupConfig.from_env(env)
    assert (config.trades_table, config.lookback_hours, config.concurrency) == (
        "trades_stored",
        3,
        4,
    )
    assert config.query_timeout_s == 300.0
    for bad in ("0", "49", "two", "-1"):
        with pytest.raises(ConfigError, match="ROLLUP_LOOKBACK_HOURS"):
            RollupConfig.from_env({**env, "ROLLUP_LOOKBACK_HOURS": bad})
    with pytest.raises(ConfigError, match="ATHENA_WORKGROUP"):
        RollupConfig.from_env({"DATA_BUCKET": "b", "GLUE_DATABASE": "d"})
    staged = RollupConfig.for_stage("pre-prod", "123456789012", "eu-west-1")
    assert staged.data_bucket == "tradelake-pre-prod-123456789012-eu-west-1"
    assert staged.glue_database == "tradelake_pre_prod"
    assert staged.workgroup == "tradelake-pre-prod"
    assert staged.trades_table == "trades_stored"


@pytest.mark.parametrize("prefix", ["", "/", "rollups", "rollups/ohlcv_1m/symbol=BTCUSD"])
def test_only_a_directory_prefix_is_ever_deleted(prefix: str) -> None:
    with pytest.raises(ValueError, match="not a directory prefix"):
        S3Prefixes(object(), BUCKET).delete_prefix(prefix)
