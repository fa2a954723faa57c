"""The rollup Lambda and ``tradelake backfill`` against moto's Athena, S3 and Glue.

moto's Athena does not run SQL: it records each query and reports a state (QUEUED → RUNNING →
SUCCEEDED, as fast or as slowly as its state manager says; FAILED or CANCELLED when a test makes
it so). So these tests check what the job asks of AWS and in which order — the view first, then
per rollup, symbol and hour: clear the prefix, UNLOAD exactly there, poll until the query ended,
register the partition — and that failed or cancelled queries surface as errors and metrics. What
the SQL computes is tested on DuckDB with the same files (tests of ``tradelake.analytics``).
"""

from __future__ import annotations

import json
import re
import sys
from argparse import Namespace
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.athena.models import athena_backends
from moto.moto_api import state_manager

from aws_world import (
    REGION,
    LambdaContext,
    emf_values,
    load_function,
    moto_credentials,
    parquet_table_input,
)
from tradelake.adapters.athena import AthenaQueries
from tradelake.analytics import hour_params, trino_sql
from tradelake.backfill import backfill_command, time_arg
from tradelake.rollup import RollupFailedError
from tradelake.schema import (
    PARTITION_KEYS,
    ROLLUP_COLUMNS,
    ROLLUP_PARTITION_KEYS,
    TRADE_COLUMNS,
)

ACCOUNT = "123456789012"  # moto's
STAGE = "test"
BUCKET = f"tradelake-{STAGE}-{ACCOUNT}-{REGION}"  # as serverless.yml names them
DATABASE = f"tradelake_{STAGE}"
WORKGROUP = f"tradelake-{STAGE}"
TABLE = "trades_stored"
NOW = datetime(2026, 11, 27, 15, 15, tzinfo=UTC)
H13, H14 = datetime(2026, 11, 27, 13, tzinfo=UTC), datetime(2026, 11, 27, 14, tzinfo=UTC)
UNLOAD = re.compile(
    r"^UNLOAD \(\n(?P<select>.*)\n\)\nTO 's3://(?P<bucket>[^/]+)/(?P<prefix>[^']+)'\n"
    r"WITH \(format = 'PARQUET', compression = 'SNAPPY'\)$",
    re.DOTALL,
)
# The contract's columns, in order, less `symbol` (the partition).
BAR_COLUMNS = [
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quote_volume",
    "vwap",
    "trade_count",
    "buy_volume",
    "sell_volume",
]


def prefix(name: str, symbol: str, hour: datetime) -> str:
    return (
        f"rollups/{name}/symbol={symbol}/year={hour:%Y}/month={hour:%m}/day={hour:%d}"
        f"/hour={hour:%H}/"
    )


@dataclass
class World:
    """The moto clients, each call recorded in one log, and hooks after Athena starts a query."""

    s3: Any
    glue: Any
    athena: Any
    log: list[tuple[str, dict[str, Any], Any]] = field(default_factory=list)
    after_start: list[Callable[[str, str], None]] = field(default_factory=list)

    def recorded(self, client: Any) -> Any:
        world = self

        class Recorded:
            def __getattr__(self, name: str) -> Any:
                method = getattr(client, name)

                def call(**kwargs: Any) -> Any:
                    result = method(**kwargs)
                    world.log.append((name, kwargs, result))
                    if name == "start_query_execution":
                        for hook in world.after_start:
                            hook(result["QueryExecutionId"], kwargs["QueryString"])
                    return result

                return call

        return Recorded()

    def session(self) -> Any:
        """A boto3 Session look-alike whose clients are recorded (for ``tradelake backfill``)."""
        world = self

        class Session:
            region_name = REGION

            def client(self, service: str) -> Any:
                return world.recorded(boto3.client(service, region_name=REGION))

        return Session()

    def clients(self) -> dict[str, Any]:
        return {
            "athena": self.recorded(self.athena),
            "s3": self.recorded(self.s3),
            "glue": self.recorded(self.glue),
        }

    def trades_partition(self, symbol: str, hour: datetime) -> None:
        values = [symbol, f"{hour:%Y}", f"{hour:%m}", f"{hour:%d}", f"{hour:%H}"]
        location = f"s3://{BUCKET}/trades/" + "/".join(
            f"{c.name}={v}" for c, v in zip(PARTITION_KEYS, values, strict=True)
        )
        self.glue.batch_create_partition(
            DatabaseName=DATABASE,
            TableName=TABLE,
            PartitionInputList=[{"Values": values, "StorageDescriptor": {"Location": location}}],
        )

    def put(self, key: str) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")

    def keys(self, under: str = "") -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=under)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def partitions(self, table: str) -> dict[tuple[str, ...], str]:
        found = self.glue.get_partitions(DatabaseName=DATABASE, TableName=table)["Partitions"]
        return {tuple(p["Values"]): p["StorageDescriptor"]["Location"] for p in found}

    def steps(self) -> list[tuple[str, str]]:
        """What the job asked, in order: view, clear <prefix>, unload <prefix>, poll <id>,
        register <prefix>."""
        steps: list[tuple[str, str]] = []
        for name, kwargs, result in self.log:
            if name == "start_query_execution":
                sql = kwargs["QueryString"]
                unload = UNLOAD.match(sql)
                if unload:
                    steps.append(("unload", unload["prefix"]))
                else:
                    assert sql == trino_sql("trades_view")
                    steps.append(("view", result["QueryExecutionId"]))
            elif name == "list_objects_v2":
                steps.append(("clear", kwargs["Prefix"]))
            elif name == "get_query_execution":
                state = result["QueryExecution"]["Status"]["State"]
                steps.append(("poll", f"{kwargs['QueryExecutionId']} {state}"))
            elif name == "batch_create_partition":
                for entry in kwargs["PartitionInputList"]:
                    location = entry["StorageDescriptor"]["Location"]
                    steps.append(("register", location.removeprefix(f"s3://{BUCKET}/")))
        return steps

    def fail(self, state: str, where: str) -> None:
        """Make the query whose text contains ``where`` end FAILED or CANCELLED."""

        def hook(query_id: str, sql: str) -> None:
            if where in sql:
                if state == "CANCELLED":
                    self.athena.stop_query_execution(QueryExecutionId=query_id)
                else:
                    athena_backends[ACCOUNT][REGION].executions[query_id].status = state

        self.after_start.append(hook)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    moto_credentials(
        monkeypatch,
        DATA_BUCKET=BUCKET,
        GLUE_DATABASE=DATABASE,
        TRADES_TABLE=TABLE,
        ATHENA_WORKGROUP=WORKGROUP,
        ROLLUP_LOOKBACK_HOURS="2",
        POWERTOOLS_METRICS_NAMESPACE="tradelake",
    )
    with mock_aws():
        world = World(
            boto3.client("s3", region_name=REGION),
            boto3.client("glue", region_name=REGION),
            boto3.client("athena", region_name=REGION),
        )
        world.s3.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        world.glue.create_database(DatabaseInput={"Name": DATABASE})
        world.glue.create_table(
            DatabaseName=DATABASE,
            TableInput=parquet_table_input(
                TABLE, TRADE_COLUMNS, PARTITION_KEYS, f"s3://{BUCKET}/trades/"
            ),
        )
        for name, columns in ROLLUP_COLUMNS.items():
            world.glue.create_table(
                DatabaseName=DATABASE,
                TableInput=parquet_table_input(
                    name, columns, ROLLUP_PARTITION_KEYS[name], f"s3://{BUCKET}/rollups/{name}/"
                ),
            )
        world.athena.create_work_group(Name=WORKGROUP)
        yield world
        state_manager.unset_transition(model_name="athena::execution")


@pytest.fixture
def rollup(world: World) -> ModuleType:
    return load_function("rollup")


def invoke(rollup: ModuleType, world: World, run_s: float = 900) -> dict[str, Any]:
    """One scheduled invocation at NOW, with ``run_s`` before the Lambda deadline."""
    context = LambdaContext(run_s)
    result: dict[str, Any] = rollup.handler(None, context, now=NOW, **world.clients())
    return result


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_each_hour_and_symbol_is_cleared_then_unloaded_then_registered(
    rollup: ModuleType, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.trades_partition("BTCUSD", H13)
    world.trades_partition("sBTCUSDT", H13)
    world.trades_partition("BTCUSD", H14)
    world.trades_partition("BTCUSD", datetime(2026, 11, 27, 12, tzinfo=UTC))  # before the window
    world.trades_partition("BTCUSD", datetime(2026, 11, 27, 15, tzinfo=UTC))  # not closed yet
    stale = prefix("ohlcv_1m", "BTCUSD", H13) + "20261127_old_run_file"
    neighbour = prefix("ohlcv_1m", "BTCUSD", datetime(2026, 11, 27, 12, tzinfo=UTC)) + "keep"
    world.put(stale)
    world.put(neighbour)

    result = invoke(rollup, world)

    targets = [
        (name, symbol, hour)
        for hour, symbol in ((H13, "BTCUSD"), (H13, "sBTCUSDT"), (H14, "BTCUSD"))
        for name in ("ohlcv_1m", "ohlcv_1h")
    ]
    steps = world.steps()
    assert steps[0][0] == "view"  # CREATE OR REPLACE VIEW trades, before anything reads it
    unloads = [where for kind, where in steps if kind == "unload"]
    assert sorted(unloads) == sorted(prefix(*t) for t in targets)
    for where in unloads:
        cleared = steps.index(("clear", where))
        unloaded = steps.index(("unload", where))
        registered = steps.index(("register", where))
        assert cleared < unloaded < registered, where
    assert world.keys("rollups/") == [neighbour]  # the stale file went, its neighbour stayed
    for name in ("ohlcv_1m", "ohlcv_1h"):
        assert world.partitions(name) == {
            (symbol, f"{hour:%Y}", f"{hour:%m}", f"{hour:%d}", f"{hour:%H}"): (
                f"s3://{BUCKET}/{prefix(name, symbol, hour)}"
            )
            for n, symbol, hour in targets
            if n == name
        }
    assert result["written"] == 6
    assert result["failed"] == 0
    assert result["hours"] == ["2026-11-27T13Z", "2026-11-27T14Z"]
    # A run without failures publishes no metric: AWS/Lambda Duration and AWS/Athena
    # ProcessedBytes chart it for free; the counts are in the log line.
    assert emf_values(capsys.readouterr().out) == {}

    # A rerun replaces the same hours: existing partitions are success, not errors.
    world.log.clear()
    assert invoke(rollup, world)["partitions_created"] == 0


def test_the_unload_selects_the_rollup_columns_from_the_rendered_sql_into_its_prefix(
    rollup: ModuleType, world: World
) -> None:
    world.trades_partition("sBTCUSDT", H14)
    invoke(rollup, world)
    sqls = [kw["QueryString"] for name, kw, _ in world.log if name == "start_query_execution"]
    unloads = {m["prefix"]: m for m in map(UNLOAD.match, sqls) if m}
    assert set(unloads) == {prefix(n, "sBTCUSDT", H14) for n in ("ohlcv_1m", "ohlcv_1h")}
    for name, bar in (("ohlcv_1m", "minute"), ("ohlcv_1h", "hour")):
        unload = unloads[prefix(name, "sBTCUSDT", H14)]
        assert unload["bucket"] == BUCKET
        select = unload["select"]
        assert re.findall(r' AS "(\w+)"', select) == [bar, *BAR_COLUMNS]  # no symbol
        assert trino_sql(name, **hour_params("sBTCUSDT", H14)).strip() in select
    # The calls Athena got: each in the workgroup, the database as context.
    for name, kwargs, _ in world.log:
        if name == "start_query_execution":
            assert kwargs["WorkGroup"] == WORKGROUP
            assert kwargs["QueryExecutionContext"] == {"Database": DATABASE}


def test_every_query_is_polled_until_it_succeeded(rollup: ModuleType, world: World) -> None:
    world.trades_partition("BTCUSD", H14)
    # Each GetQueryExecution moves a query one state on: QUEUED → RUNNING → SUCCEEDED.
    state_manager.set_transition(
        model_name="athena::execution", transition={"progression": "manual", "times": 1}
    )
    invoke(rollup, world)
    polls: dict[str, list[str]] = {}
    for kind, what in world.steps():
        if kind == "poll":
            query_id, state = what.split()
            polls.setdefault(query_id, []).append(state)
    assert len(polls) == 3  # the view and two rollups
    assert all(states == ["RUNNING", "SUCCEEDED"] for states in polls.values())
    # A partition is registered only once its query has SUCCEEDED.
    steps = world.steps()
    for where in (prefix(n, "BTCUSD", H14) for n in ("ohlcv_1m", "ohlcv_1h")):
        unloaded = steps.index(("unload", where))
        query_id = next(
            r["QueryExecutionId"]
            for name, kw, r in world.log
            if name == "start_query_execution" and where in kw["QueryString"]
        )
        succeeded = steps.index(("poll", f"{query_id} SUCCEEDED"))
        assert unloaded < succeeded < steps.index(("register", where))


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED"])
def test_a_failed_or_cancelled_query_fails_the_run_loudly_after_the_others(
    rollup: ModuleType,
    world: World,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    state: str,
) -> None:
    world.trades_partition("BTCUSD", H13)
    world.trades_partition("BTCUSD", H14)
    broken = prefix("ohlcv_1h", "BTCUSD", H13)
    world.fail(state, broken)
    # The "rollup" logger's handler was made at the first cold start: point it at capsys.
    monkeypatch.setattr(rollup.logger.registered_handler, "stream", sys.stdout)

    with pytest.raises(
        RollupFailedError, match=rf"1 rollup\(s\) failed.*ohlcv_1h BTCUSD 2026-11-27T13Z: {state}"
    ):
        invoke(rollup, world)

    out = capsys.readouterr().out
    metrics = emf_values(out)
    assert metrics == {"RollupFailures": 1}
    (logged,) = [json.loads(line) for line in out.splitlines() if '"rollup failed"' in line]
    assert (logged["level"], logged["target"], logged["state"]) == (
        "ERROR",
        "ohlcv_1h BTCUSD 2026-11-27T13Z",
        state,
    )
    # The others are written and registered; the failed hour is not registered.
    assert ("BTCUSD", "2026", "11", "27", "13") not in world.partitions("ohlcv_1h")
    assert ("BTCUSD", "2026", "11", "27", "14") in world.partitions("ohlcv_1h")
    assert len(world.partitions("ohlcv_1m")) == 2


def test_without_the_view_nothing_is_touched(
    rollup: ModuleType, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.trades_partition("BTCUSD", H14)
    world.put(prefix("ohlcv_1m", "BTCUSD", H14) + "previous")
    world.fail("FAILED", "CREATE OR REPLACE VIEW trades")

    with pytest.raises(RollupFailedError, match="trades view: FAILED"):
        invoke(rollup, world)

    assert [kind for kind, _ in world.steps() if kind not in ("view", "poll")] == []
    assert world.keys("rollups/") == [prefix("ohlcv_1m", "BTCUSD", H14) + "previous"]
    assert emf_values(capsys.readouterr().out)["RollupFailures"] == 1


def test_an_aws_error_counts_as_a_failure_too(
    rollup: ModuleType, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.glue.delete_table(DatabaseName=DATABASE, Name=TABLE)
    with pytest.raises(Exception, match="EntityNotFoundException"):
        invoke(rollup, world)
    assert emf_values(capsys.readouterr().out)["RollupFailures"] == 1


def test_no_query_starts_when_it_could_not_finish_before_the_deadline(
    rollup: ModuleType, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.trades_partition("BTCUSD", H14)
    # 300 s of query timeout + 30 s of margin do not fit in 200 s: nothing is deleted or started.
    with pytest.raises(RollupFailedError, match=r"2 rollup\(s\) failed.*NOT_STARTED"):
        invoke(rollup, world, run_s=200)
    assert [kind for kind, _ in world.steps() if kind in ("clear", "unload")] == []
    assert emf_values(capsys.readouterr().out)["RollupFailures"] == 2


def test_a_query_running_past_its_timeout_is_stopped(world: World) -> None:
    state_manager.set_transition(
        model_name="athena::execution", transition={"progression": "manual", "times": 1000}
    )
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    engine = AthenaQueries(
        world.athena,
        workgroup=WORKGROUP,
        database=DATABASE,
        timeout_s=30,
        clock=lambda: now[0],
        sleep=sleep,
        rng=lambda: 1.0,
    )
    query_id = engine.start("SELECT 1")
    outcome = engine.wait(query_id)

    assert (outcome.state, outcome.succeeded) == ("TIMED_OUT", False)
    assert "still QUEUED after 30 s" in outcome.reason
    assert sleeps[:5] == [0.5, 1.0, 2.0, 4.0, 5.0]  # capped exponential backoff
    assert sum(sleeps) >= 30
    status = world.athena.get_query_execution(QueryExecutionId=query_id)
    assert status["QueryExecution"]["Status"]["State"] == "CANCELLED"


def backfill_args(start: str, end: str) -> Namespace:
    """What the CLI parses from ``--stage test --from START --to END --region eu-west-1``."""
    return Namespace(stage=STAGE, start=time_arg(start), end=time_arg(end), region=REGION)


def test_backfill_runs_the_same_job_on_the_stage_s_resources(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.trades_partition("BTCUSD", H13)
    world.trades_partition("BTCUSD", H14)
    world.trades_partition("BTCUSD", datetime(2026, 11, 27, 15, tzinfo=UTC))  # not closed at NOW
    session = world.session()

    args = backfill_args("2026-11-27T13:30+00:00", "2026-11-27T16:00Z")
    code = backfill_command(args, session, now=NOW)

    assert code == 0
    assert set(world.partitions("ohlcv_1m")) == {
        ("BTCUSD", "2026", "11", "27", "13"),
        ("BTCUSD", "2026", "11", "27", "14"),
    }
    assert len(world.partitions("ohlcv_1h")) == 2
    err = capsys.readouterr().err
    assert f"s3://{BUCKET}/rollups/" in err
    assert f"workgroup {WORKGROUP}" in err
    assert "4 rollup(s) written, 0 failed" in err


def test_backfill_reports_failures_and_exits_1(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.trades_partition("BTCUSD", H14)
    world.fail("CANCELLED", prefix("ohlcv_1m", "BTCUSD", H14))
    session = world.session()
    args = backfill_args("2026-11-27T14:00", "2026-11-27T15:00")
    assert backfill_command(args, session, now=NOW) == 1
    err = capsys.readouterr().err
    assert "failed: ohlcv_1m BTCUSD 2026-11-27T14Z: CANCELLED" in err
    assert "1 rollup(s) written, 1 failed" in err


def test_backfill_refuses_a_range_without_a_closed_hour(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert backfill_command(backfill_args("2026-11-27T15:00", "2026-11-28"), now=NOW) == 1
    assert "no hour in that range has ended yet" in capsys.readouterr().err
