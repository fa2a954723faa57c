"""The partitions Lambda against moto's Glue: repeated, reordered and malformed S3 notifications.

The table is built from ``tradelake.schema`` with the storage settings of resources/catalog.yml,
so the partitions get the descriptor the real table would give them.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from aws_world import (
    PARQUET_SERDE,
    LambdaContext,
    emf_values,
    load_function,
    parquet_table_input,
    partitions_world,
    s3_notification,
)
from tradelake.adapters.glue_catalog import GlueCatalog
from tradelake.backoff import Backoff
from tradelake.catalog import Partition, PartitionsNotRegisteredError
from tradelake.schema import PARTITION_KEYS, TRADE_COLUMNS

REGION = "eu-west-1"
DATABASE = "tradelake_test"
BUCKET = "tradelake-test-lake"
TABLE = "trades_stored"  # the Glue table of every stored trade row (resources/catalog.yml)


def trades_table_input() -> dict[str, Any]:
    return parquet_table_input(TABLE, TRADE_COLUMNS, PARTITION_KEYS, f"s3://{BUCKET}/trades/")


class Recording:
    """A boto3 client that records every call (name, kwargs) and can inject failures."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.raise_next: list[ClientError] = []
        self.entry_errors: dict[tuple[str, ...], list[str]] = {}
        """Partition values → error codes Glue reports for that entry on its next attempts."""

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            if name == "batch_create_partition":
                return self._batch_create(method, kwargs)
            return method(**kwargs)

        return call

    def _batch_create(self, method: Any, kwargs: dict[str, Any]) -> Any:
        if self.raise_next:
            raise self.raise_next.pop(0)
        injected, passed = [], []
        for entry in kwargs["PartitionInputList"]:
            codes = self.entry_errors.get(tuple(entry["Values"]))
            if codes:
                code = codes.pop(0)
                injected.append(
                    {"PartitionValues": entry["Values"], "ErrorDetail": {"ErrorCode": code}}
                )
            else:
                passed.append(entry)
        response = method(**{**kwargs, "PartitionInputList": passed})
        response["Errors"] = response.get("Errors", []) + injected
        return response

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.calls if n == name)

    def batch_sizes(self) -> list[int]:
        return [
            len(k["PartitionInputList"]) for n, k in self.calls if n == "batch_create_partition"
        ]


def client_error(code: str, operation: str = "BatchCreatePartition") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


@pytest.fixture
def moto_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with partitions_world(monkeypatch, DATABASE, BUCKET, TABLE):
        yield


@pytest.fixture
def glue(moto_env: None) -> Recording:
    client = boto3.client("glue", region_name=REGION)
    client.create_database(DatabaseInput={"Name": DATABASE})
    client.create_table(DatabaseName=DATABASE, TableInput=trades_table_input())
    return Recording(client)


@pytest.fixture
def partitions(moto_env: None) -> ModuleType:
    return load_function("partitions")


def key(symbol: str = "BTCUSD", day: int = 27, hour: int = 14, file: str = "f.parquet") -> str:
    return f"trades/symbol={symbol}/year=2026/month=11/day={day:02d}/hour={hour:02d}/{file}"


def notification(*keys: str) -> dict[str, Any]:
    return s3_notification(BUCKET, keys)


def stored(glue: Recording) -> dict[tuple[str, ...], dict[str, Any]]:
    """Every partition of the trades table, by values (moto keeps one per values list)."""
    parts = glue.client.get_partitions(DatabaseName=DATABASE, TableName=TABLE)["Partitions"]
    by_values = {tuple(p["Values"]): p for p in parts}
    assert len(by_values) == len(parts)
    return by_values


def test_repeated_reordered_and_malformed_keys_give_each_partition_once(
    partitions: ModuleType, glue: Recording, capsys: pytest.CaptureFixture[str]
) -> None:
    event = notification(
        key(hour=15),
        key(hour=14),
        key(hour=15, file="g.parquet"),
        "trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/.f.parquet.1a2b.tmp",
        key(symbol="sBTCUSDT", hour=14),
        "trades/symbol=BTCUSD/year=2026/month=13/day=27/hour=14/f.parquet",
        "gaps/1795791983766134378-520d.jsonl",
        key(hour=14),
        "trades/symbol=BTCUSD/year=2026/month=11/day=27/f.parquet",
    )

    result = partitions.handler(event, LambdaContext(), glue=glue)

    assert result == {"created": 3, "existing": 0, "skipped": 4}
    parts = stored(glue)
    assert set(parts) == {
        ("BTCUSD", "2026", "11", "27", "15"),
        ("BTCUSD", "2026", "11", "27", "14"),
        ("sBTCUSDT", "2026", "11", "27", "14"),
    }
    table = trades_table_input()["StorageDescriptor"]
    for values, p in parts.items():
        sd = p["StorageDescriptor"]
        assert sd["Location"] == (
            f"s3://{BUCKET}/trades/symbol={values[0]}/year={values[1]}/month={values[2]}"
            f"/day={values[3]}/hour={values[4]}/"
        )
        assert sd["SerdeInfo"] == PARQUET_SERDE
        assert sd["Columns"] == table["Columns"]
        assert (sd["InputFormat"], sd["OutputFormat"]) == (
            table["InputFormat"],
            table["OutputFormat"],
        )
    assert glue.count("get_table") == 1
    assert glue.batch_sizes() == [3]
    assert emf_values(capsys.readouterr().out) == {"SkippedKeys": 4.0}


def test_the_same_event_twice_is_fine(partitions: ModuleType, glue: Recording) -> None:
    event = notification(key(hour=1), key(hour=2))
    assert partitions.handler(event, LambdaContext(), glue=glue)["created"] == 2
    assert partitions.handler(event, LambdaContext(), glue=glue) == {
        "created": 0,
        "existing": 2,
        "skipped": 0,
    }
    assert len(stored(glue)) == 2


def test_an_event_of_only_malformed_keys_calls_glue_not_at_all(
    partitions: ModuleType, glue: Recording
) -> None:
    event = notification("gaps/x.jsonl", "_state/cursor.json", "trades/symbol=BTCUSD/f")
    event["Records"].append({"eventName": "ObjectCreated:Put"})
    assert partitions.handler(event, LambdaContext(), glue=glue) == {
        "created": 0,
        "existing": 0,
        "skipped": 4,
    }
    assert glue.calls == []


def test_more_than_100_partitions_are_split_into_several_calls(
    partitions: ModuleType, glue: Recording
) -> None:
    keys = [
        key(symbol=f"SYM{s}", day=d, hour=h) for s in range(3) for d in (1, 2, 3) for h in range(24)
    ]
    glue.client.batch_create_partition(  # ten of them exist already
        DatabaseName=DATABASE,
        TableName=TABLE,
        PartitionInputList=[
            {"Values": ["SYM0", "2026", "11", "01", f"{h:02d}"], "StorageDescriptor": {}}
            for h in range(10)
        ],
    )
    result = partitions.handler(notification(*keys, *keys[:50]), LambdaContext(), glue=glue)

    assert result == {"created": 206, "existing": 10, "skipped": 0}
    assert glue.batch_sizes() == [100, 100, 16]
    assert len(stored(glue)) == 216


def test_throttled_calls_are_retried(partitions: ModuleType, glue: Recording) -> None:
    glue.raise_next = [
        client_error("ThrottlingException"),
        client_error("InternalServiceException"),
    ]
    result = partitions.handler(notification(key(hour=3)), LambdaContext(), glue=glue)
    assert result["created"] == 1
    assert glue.batch_sizes() == [1, 1, 1]
    assert len(stored(glue)) == 1


def test_entries_failing_transiently_are_retried_alone(
    partitions: ModuleType, glue: Recording
) -> None:
    glue.entry_errors[("BTCUSD", "2026", "11", "27", "04")] = [
        "ConcurrentModificationException",
        "ThrottlingException",
    ]
    result = partitions.handler(notification(key(hour=4), key(hour=5)), LambdaContext(), glue=glue)
    assert result == {"created": 2, "existing": 0, "skipped": 0}
    assert glue.batch_sizes() == [2, 1, 1]


def test_other_entry_errors_fail_the_invocation_after_the_rest_is_done(
    partitions: ModuleType, glue: Recording
) -> None:
    glue.entry_errors[("BTCUSD", "2026", "11", "27", "06")] = ["InvalidInputException"]
    event = notification(key(hour=6), key(hour=7))
    with pytest.raises(PartitionsNotRegisteredError, match=r"hour=06/: InvalidInputException"):
        partitions.handler(event, LambdaContext(), glue=glue)
    assert set(stored(glue)) == {("BTCUSD", "2026", "11", "27", "07")}

    # S3's retry of the same event then completes the job.
    assert partitions.handler(event, LambdaContext(), glue=glue) == {
        "created": 1,
        "existing": 1,
        "skipped": 0,
    }


def test_a_missing_table_fails_the_invocation(partitions: ModuleType, glue: Recording) -> None:
    glue.client.delete_table(DatabaseName=DATABASE, Name=TABLE)
    with pytest.raises(ClientError, match="EntityNotFoundException"):
        partitions.handler(notification(key(hour=14)), LambdaContext(), glue=glue)


def test_rollup_objects_are_not_registered_here(partitions: ModuleType, glue: Recording) -> None:
    """The rollup job registers its own partitions once the hour's query has succeeded."""
    event = notification("rollups/ohlcv_1m/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/x")
    assert partitions.handler(event, LambdaContext(), glue=glue) == {
        "created": 0,
        "existing": 0,
        "skipped": 1,
    }
    assert glue.calls == []


def test_retries_give_up_after_the_last_attempt(glue: Recording) -> None:
    sleeps: list[float] = []
    catalog = GlueCatalog(
        glue,
        DATABASE,
        backoff=Backoff(attempts=3, base_s=1, cap_s=1.5),
        sleep=sleeps.append,
        rng=lambda: 1.0,
    )
    glue.raise_next = [client_error("ThrottlingException")] * 3
    p = Partition(TABLE, ("BTCUSD", "2026", "11", "27", "08"), f"s3://{BUCKET}/trades/x/")
    with pytest.raises(ClientError, match="ThrottlingException"):
        catalog.add_partitions(TABLE, [p])
    assert sleeps == [1.0, 1.5]

    glue.entry_errors[p.values] = ["ThrottlingException"] * 3
    added = catalog.add_partitions(TABLE, [p])
    assert (added.created, added.existing) == (0, 0)
    assert [f.code for f in added.failed] == ["ThrottlingException"]


def test_the_table_is_read_once_per_ttl(glue: Recording) -> None:
    now = [0.0]
    catalog = GlueCatalog(glue, DATABASE, table_ttl_s=300, clock=lambda: now[0])
    p = Partition(TABLE, ("BTCUSD", "2026", "11", "27", "09"), f"s3://{BUCKET}/trades/x/")
    catalog.add_partitions(TABLE, [p])
    now[0] = 299.0
    catalog.add_partitions(TABLE, [p])
    assert glue.count("get_table") == 1
    now[0] = 300.0
    assert catalog.add_partitions(TABLE, [p]).existing == 1
    assert glue.count("get_table") == 2


def test_the_default_client_is_made_once_at_cold_start(partitions: ModuleType) -> None:
    assert partitions.glue_catalog.glue.meta.service_model.service_name == "glue"
    assert partitions.config.glue_database == DATABASE
