"""Hostile S3 keys through the partitions function (issue 9): each odd key is skipped with its
reason, logged and counted, never registered, and the good keys of the same event all are."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest

from aws_world import (
    LambdaContext,
    emf_values,
    load_function,
    parquet_table_input,
    partitions_world,
    s3_notification,
)
from tradelake.catalog import SHOWN_KEY_CHARS
from tradelake.schema import PARTITION_KEYS, TRADE_COLUMNS

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
DATABASE = "tradelake_test"
BUCKET = "tradelake-test-lake"
TABLE = "trades_stored"
HOUR = "year=2026/month=11/day=27/hour=14"
GOOD = (
    f"trades/symbol=BTCUSD/{HOUR}/trades-1 a.parquet",  # a space: '+' in the notification
    f"trades/symbol=sBTCUSDT/{HOUR}/f.parquet",
    "trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=15/f.parquet",
)
HOSTILE = {
    f"trades/symbol=../{HOUR}/f.parquet": "bad symbol '..'",
    f"trades/symbol=/{HOUR}/f.parquet": "bad symbol ''",
    f"trades/symbol=btcusd/{HOUR}/f.parquet": "bad symbol 'btcusd'",
    f"trades/symbol=BTCUSDé/{HOUR}/f.parquet": "bad symbol 'BTCUSDé'",
    "trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=99/f.parquet": "bad hour '99'",
    "trades/symbol=BTCUSD/year=2026/month=xx/day=27/hour=14/f.parquet": "bad month 'xx'",
    f"gaps/{HOUR}/f.parquet": "not under a known table prefix",
    f"trades/symbol=BTCUSD/{HOUR}/{'x' * 2000}.parquet": "a key of 2063 bytes",
}


@pytest.fixture
def glue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with partitions_world(monkeypatch, DATABASE, BUCKET, TABLE):
        client = boto3.client("glue", region_name=REGION)
        client.create_database(DatabaseInput={"Name": DATABASE})
        client.create_table(
            DatabaseName=DATABASE,
            TableInput=parquet_table_input(
                TABLE, TRADE_COLUMNS, PARTITION_KEYS, f"s3://{BUCKET}/trades/"
            ),
        )
        yield client


@pytest.fixture
def partitions(glue: Any) -> ModuleType:
    return load_function("partitions")


def notification(*keys: str) -> dict[str, Any]:
    return s3_notification(BUCKET, keys)


def test_odd_keys_are_skipped_counted_and_logged_and_the_good_ones_registered(
    partitions: ModuleType,
    glue: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The logger kept the stream of the test that imported the handler (closed by now): point it
    # at this test's, without flushing the closed one as setStream would.
    for handler in partitions.logger.handlers:
        monkeypatch.setattr(handler, "stream", sys.stdout)
    good = [GOOD[n % len(GOOD)] for n in range(len(HOSTILE))]  # each good key more than once
    keys = [k for pair in zip(good, HOSTILE, strict=True) for k in pair]
    result = partitions.handler(notification(*keys), LambdaContext(), glue=glue)

    assert result == {"created": 3, "existing": 0, "skipped": len(HOSTILE)}
    stored = glue.get_partitions(DatabaseName=DATABASE, TableName=TABLE)["Partitions"]
    assert sorted(tuple(p["Values"]) for p in stored) == [
        ("BTCUSD", "2026", "11", "27", "14"),
        ("BTCUSD", "2026", "11", "27", "15"),
        ("sBTCUSDT", "2026", "11", "27", "14"),
    ]
    out = capsys.readouterr().out
    assert emf_values(out)["SkippedKeys"] == len(HOSTILE)
    logged = [json.loads(line) for line in out.splitlines() if '"not a partition path"' in line]
    for entry, reason in zip(logged, HOSTILE.values(), strict=True):
        assert reason in entry["reason"], entry
        assert len(entry["key"]) <= SHOWN_KEY_CHARS + 1
