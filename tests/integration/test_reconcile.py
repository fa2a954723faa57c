"""Dropped partition events, recovered (issue 8, item 3): the reconcile against moto's S3 and Glue.

Objects land in S3; the notifications of some reach the partitions function, the others are
"dropped" (never delivered, as after Lambda's last retry). The reconcile — as the CLI's
``tradelake repair-partitions`` and as the function's daily ``Scheduled Event`` — must register
exactly the dropped partitions, with the locations the function would have given them, and a
second run must change nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from aws_world import (
    LambdaContext,
    emf_values,
    load_function,
    moto_credentials,
    parquet_table_input,
)
from tradelake.adapters.glue_catalog import GlueCatalog
from tradelake.catalog import default_routes
from tradelake.cli import main, parser
from tradelake.reconcile import reconcile, repair_command
from tradelake.schema import PARTITION_KEYS, TRADE_COLUMNS

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's
STAGE = "test"
BUCKET = f"tradelake-{STAGE}-{ACCOUNT}-{REGION}"  # how serverless.yml names the stage's bucket
DATABASE = "tradelake_test"
TABLE = "trades_stored"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    moto_credentials(
        monkeypatch,
        GLUE_DATABASE=DATABASE,
        TRADES_TABLE=TABLE,
        GAPS_TABLE="gaps",
        DATA_BUCKET=BUCKET,
        RECONCILE_DAYS="3",
        POWERTOOLS_METRICS_NAMESPACE="tradelake",
    )
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        glue = boto3.client("glue", region_name=REGION)
        glue.create_database(DatabaseInput={"Name": DATABASE})
        glue.create_table(
            DatabaseName=DATABASE,
            TableInput=parquet_table_input(
                TABLE, TRADE_COLUMNS, PARTITION_KEYS, f"s3://{BUCKET}/trades/"
            ),
        )
        yield s3, glue


def key(symbol: str, day: date, hour: int, file: str = "f.parquet") -> str:
    return (
        f"trades/symbol={symbol}/year={day:%Y}/month={day:%m}/day={day:%d}/hour={hour:02d}/{file}"
    )


def values(symbol: str, day: date, hour: int) -> tuple[str, ...]:
    return (symbol, f"{day:%Y}", f"{day:%m}", f"{day:%d}", f"{hour:02d}")


def put(s3: Any, *keys: str) -> None:
    for k in keys:
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"PAR1")


def notification(*keys: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": BUCKET}, "object": {"key": quote_plus(k, safe="/")}},
            }
            for k in keys
        ]
    }


def registered(glue: Any) -> dict[tuple[str, ...], str]:
    pages = glue.get_paginator("get_partitions").paginate(DatabaseName=DATABASE, TableName=TABLE)
    return {
        tuple(p["Values"]): p["StorageDescriptor"]["Location"]
        for page in pages
        for p in page["Partitions"]
    }


DAY = date(2026, 11, 27)


@pytest.fixture
def partitions(aws: tuple[Any, Any]) -> ModuleType:
    return load_function("partitions")


def test_the_reconcile_registers_exactly_the_dropped_partitions_and_is_idempotent(
    aws: tuple[Any, Any], partitions: ModuleType
) -> None:
    s3, glue = aws
    delivered = [key("BTCUSD", DAY, 13), key("BTCUSD", DAY, 14), key("BTCUSDT", DAY, 14)]
    dropped = [
        key("BTCUSD", DAY, 15),
        key("BTCUSD", DAY, 15, "g.parquet"),  # a second file of the same hour
        key("sBTCUSDT", DAY, 14),
        key("BTCUSDT", DAY + timedelta(days=1), 0),
    ]
    not_notified = [
        key("BTCUSD", DAY, 16, "f.parquet.tmp"),  # no .parquet suffix: S3 never notifies
        key("BTCUSD", DAY, 17, "_temporary.parquet"),  # hidden: the function would skip it
        "trades/symbol=BTCUSD/year=2026/month=11/day=27/x.parquet",  # not a partition path
        "gaps/2026-11-27.jsonl",
        "errors/format-conversion-failed/year=2026/month=11/day=27/e.parquet",
    ]
    put(s3, *delivered, *dropped, *not_notified)
    partitions.handler(notification(*delivered), LambdaContext(), glue=glue)
    before = registered(glue)
    assert set(before) == {
        values("BTCUSD", DAY, 13),
        values("BTCUSD", DAY, 14),
        values("BTCUSDT", DAY, 14),
    }

    catalog = GlueCatalog(glue, DATABASE)
    result = reconcile(s3, catalog, BUCKET, default_routes(TABLE))

    want = {
        values("BTCUSD", DAY, 15),
        values("sBTCUSDT", DAY, 14),
        values("BTCUSDT", DAY + timedelta(days=1), 0),
    }
    assert {p.values for p in result.missing} == want
    assert result.found == 6
    assert result.added.created == 3
    assert result.added.failed == ()
    # Reported like the function reports them, never registered.
    assert sorted(s.key for s in result.skipped) == sorted(not_notified[1:3])
    after = registered(glue)
    assert set(after) == set(before) | want
    # The location the function itself would have given (the same partition_of).
    assert after[values("BTCUSD", DAY, 15)] == (
        f"s3://{BUCKET}/trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=15/"
    )

    again = reconcile(s3, catalog, BUCKET, default_routes(TABLE))
    assert again.missing == ()
    assert again.added.created == 0
    assert registered(glue) == after


def test_a_window_only_lists_the_days_asked_for(aws: tuple[Any, Any]) -> None:
    s3, glue = aws
    put(s3, key("BTCUSD", DAY, 1), key("BTCUSD", DAY - timedelta(days=5), 1))
    catalog = GlueCatalog(glue, DATABASE)
    result = reconcile(s3, catalog, BUCKET, default_routes(TABLE), since=DAY, today=DAY)
    assert [p.values for p in result.missing] == [values("BTCUSD", DAY, 1)]
    assert set(registered(glue)) == {values("BTCUSD", DAY, 1)}


def test_the_daily_scheduled_event_runs_the_reconcile_over_the_last_days(
    aws: tuple[Any, Any], partitions: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    s3, glue = aws
    today = datetime.now(UTC).date()
    recent = [key("BTCUSD", today, 0), key("BTCUSDT", today - timedelta(days=2), 23)]
    put(s3, *recent, key("BTCUSD", today - timedelta(days=3), 5))  # outside the 3-day window
    scheduled = {
        "version": "0",
        "source": "aws.events",
        "detail-type": "Scheduled Event",
        "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/tradelake-test-partitions"],
        "detail": {},
    }
    result = partitions.handler(scheduled, LambdaContext(), glue=glue, s3=s3)
    assert result == {"found": 2, "missing": 2, "created": 2, "existing": 0}
    assert set(registered(glue)) == {
        values("BTCUSD", today, 0),
        values("BTCUSDT", today - timedelta(days=2), 23),
    }
    assert emf_values(capsys.readouterr().out)["PartitionsRepaired"] == 2
    assert partitions.handler(scheduled, LambdaContext(), glue=glue, s3=s3)["created"] == 0


def test_repair_partitions_cli_finds_the_stage_by_name(
    aws: tuple[Any, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    s3, glue = aws
    put(s3, key("BTCUSD", DAY, 3), key("BTCUSD", DAY, 4))
    session = boto3.session.Session(region_name=REGION)

    dry = parser().parse_args(["repair-partitions", "--stage", STAGE, "--dry-run"])
    assert repair_command(dry, session=session) == 0
    err = capsys.readouterr().err
    assert f"missing: s3://{BUCKET}/trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=03/" in err
    assert "would register 2" in err
    assert registered(glue) == {}

    assert main(["repair-partitions", "--stage", STAGE, "--region", REGION]) == 0
    assert "registered 2" in capsys.readouterr().err
    assert set(registered(glue)) == {values("BTCUSD", DAY, 3), values("BTCUSD", DAY, 4)}
    assert main(["repair-partitions", "--stage", STAGE, "--region", REGION]) == 0
    assert "0 missing" in capsys.readouterr().err


def test_repair_partitions_refuses_a_bad_stage_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["repair-partitions", "--stage", "no/such"])
    assert "is not a stage name" in capsys.readouterr().err
