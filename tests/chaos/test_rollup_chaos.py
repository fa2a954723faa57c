"""The hourly rollup, run after run, against an Athena that throttles, fails and cancels queries.

moto stands in for Athena (it runs no SQL: a query ends SUCCEEDED unless told otherwise), S3 and
Glue. In front of moto's Athena a seeded fake throttles StartQueryExecution (retried by the
adapter), refuses it for good, throttles a poll, and makes queries end FAILED or CANCELLED; a
failed UNLOAD leaves a partial file behind, as Athena may. Each run must either succeed or fail
loudly (an exception, ``RollupFailures``, an error log per failed rollup); then a calm run of the
same hours leaves every rollup partition registered once, at its own prefix, with no partial
file left to be read twice.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.athena.models import athena_backends

from aws_world import (
    REGION,
    LambdaContext,
    emf_values,
    load_function,
    moto_credentials,
    parquet_table_input,
)
from chaos.suite import Chaos
from tradelake.adapters import athena as athena_adapter
from tradelake.analytics import ROLLUPS
from tradelake.rollup import RollupFailedError, Target, closed_hours
from tradelake.schema import PARTITION_KEYS, ROLLUP_COLUMNS, ROLLUP_PARTITION_KEYS, TRADE_COLUMNS

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

ACCOUNT = "123456789012"  # moto's
BUCKET = f"tradelake-chaos-{ACCOUNT}-{REGION}"
DATABASE = "tradelake_chaos"
WORKGROUP = "tradelake-chaos"
TABLE = "trades_stored"
SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")
NOW = datetime(2026, 11, 27, 15, 15, tzinfo=UTC)
LOOKBACK = 4
RUNS = 6
FAILURES_METRIC = "RollupFailures"
"""What the rollup function counts failed rollups as (resources/monitoring.yml alarms on it)."""
"""Hourly runs with faults; then one calm run."""


class ChaoticAthena:
    """moto's Athena with faults drawn per call from a seeded RNG."""

    # A run of 25 queries is clean one time in five: both outcomes of a run are exercised.
    START_THROTTLED, START_REFUSED, POLL_THROTTLED = 0.15, 0.005, 0.005
    ENDED_FAILED, ENDED_CANCELLED = 0.03, 0.02

    def __init__(self, athena: Any, s3: Any, seed: int) -> None:
        self.athena, self.s3 = athena, s3
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.on = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.athena, name)

    def _draw(self, fault: str, chance: float) -> bool:
        hit = self.on and self.rng.random() < chance
        self.counts[fault] += hit
        return hit

    def start_query_execution(self, **kwargs: Any) -> Any:
        if self._draw("throttled starts", self.START_THROTTLED):
            raise _error("TooManyRequestsException", "StartQueryExecution")
        if self._draw("refused starts", self.START_REFUSED):
            raise _error("InvalidRequestException", "StartQueryExecution")
        started = self.athena.start_query_execution(**kwargs)
        query_id, sql = started["QueryExecutionId"], kwargs["QueryString"]
        execution = athena_backends[ACCOUNT][REGION].executions[query_id]
        if self._draw("failed queries", self.ENDED_FAILED):
            execution.status = "FAILED"
            if sql.startswith("UNLOAD"):  # it had begun to write
                prefix = sql.split(f"TO 's3://{BUCKET}/", 1)[1].split("'", 1)[0]
                self.s3.put_object(Bucket=BUCKET, Key=f"{prefix}partial-{query_id}", Body=b"x")
        elif self._draw("cancelled queries", self.ENDED_CANCELLED):
            self.athena.stop_query_execution(QueryExecutionId=query_id)
        return started

    def get_query_execution(self, **kwargs: Any) -> Any:
        if self._draw("throttled polls", self.POLL_THROTTLED):
            raise _error("ThrottlingException", "GetQueryExecution")
        return self.athena.get_query_execution(**kwargs)


def _error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


@pytest.fixture
def moto_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    moto_credentials(
        monkeypatch,
        DATA_BUCKET=BUCKET,
        GLUE_DATABASE=DATABASE,
        TRADES_TABLE=TABLE,
        ATHENA_WORKGROUP=WORKGROUP,
        ROLLUP_LOOKBACK_HOURS=str(LOOKBACK),
        POWERTOOLS_METRICS_NAMESPACE="tradelake",
    )
    with mock_aws():
        yield


def test_athena_failures_are_loud_and_a_calm_run_leaves_each_rollup_once(
    moto_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    chaos: Chaos,
) -> None:
    s3, glue = boto3.client("s3", region_name=REGION), boto3.client("glue", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    glue.create_database(DatabaseInput={"Name": DATABASE})
    tables = {TABLE: (TRADE_COLUMNS, PARTITION_KEYS, "trades")} | {
        name: (ROLLUP_COLUMNS[name], ROLLUP_PARTITION_KEYS[name], f"rollups/{name}")
        for name in ROLLUPS
    }
    for name, (columns, keys, where) in tables.items():
        glue.create_table(
            DatabaseName=DATABASE,
            TableInput=parquet_table_input(name, columns, keys, f"s3://{BUCKET}/{where}/"),
        )
    athena = ChaoticAthena(boto3.client("athena", region_name=REGION), s3, chaos.seed)
    athena.athena.create_work_group(Name=WORKGROUP)
    hours = closed_hours(NOW, LOOKBACK)
    targets = [
        Target(name, symbol, hour) for hour in hours for symbol in SYMBOLS for name in ROLLUPS
    ]
    for hour in hours:
        glue.batch_create_partition(
            DatabaseName=DATABASE,
            TableName=TABLE,
            PartitionInputList=[
                {"Values": list(Target("", s, hour).values), "StorageDescriptor": {}}
                for s in SYMBOLS
            ],
        )

    rollup = load_function("rollup")
    # the adapter's own retries, without the seconds of backoff
    monkeypatch.setattr(
        athena_adapter, "AthenaQueries", partial(athena_adapter.AthenaQueries, sleep=lambda s: None)
    )
    failed_runs = 0
    for _ in range(RUNS * chaos.scale):
        before = athena.counts.copy()
        try:
            rollup.handler(None, LambdaContext(900), now=NOW, athena=athena, s3=s3, glue=glue)
            raised = None
        except (RollupFailedError, ClientError) as exc:
            raised = exc
            failed_runs += 1
        out = capsys.readouterr().out
        struck = athena.counts - before
        struck.pop("throttled starts", None)  # retried by the adapter
        # A run fails if and only if a fault struck it, and says so.
        assert (raised is not None) == bool(struck), (raised, struck)
        if raised is None:
            continue
        failures = emf_values(out)[FAILURES_METRIC]
        assert failures >= 1
        logged = out.count('"rollup failed"') + out.count('"rollup run failed"')
        assert logged >= 1, out
        if isinstance(raised, RollupFailedError):
            ended = struck["failed queries"] + struck["cancelled queries"]
            assert out.count('"rollup failed"') == ended == failures
    athena.on = False
    result = rollup.handler(None, LambdaContext(900), now=NOW, athena=athena, s3=s3, glue=glue)
    chaos.injected.update({f"Athena {fault}": n for fault, n in athena.counts.items()})
    chaos.injected["rollup runs failed"] = failed_runs
    assert athena.counts["throttled starts"] > 0
    assert athena.counts["failed queries"] + athena.counts["cancelled queries"] > 0
    assert failed_runs > 0

    # The calm run: every target once, at its own prefix; nothing a failed run left behind.
    assert result["written"] == len(targets)
    assert result["failed"] == 0
    for name in ROLLUPS:
        listed = glue.get_partitions(DatabaseName=DATABASE, TableName=name)["Partitions"]
        assert sorted(
            (tuple(p["Values"]), p["StorageDescriptor"]["Location"]) for p in listed
        ) == sorted((t.values, f"s3://{BUCKET}/{t.prefix}") for t in targets if t.name == name)
    leftovers = s3.list_objects_v2(Bucket=BUCKET, Prefix="rollups/").get("KeyCount", 0)
    assert leftovers == 0, "partial output of failed queries is cleared before the next UNLOAD"
