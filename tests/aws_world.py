"""A moto AWS world for handler tests: the resources the stack creates, and ways to read them.

Shared by the ingest handler tests and the workflow test: one bucket, one Firehose stream
(moto delivers every PutRecordBatch to S3 as one object under ``firehose/``), the SSM switch.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus
from uuid import uuid4

import boto3
import pytest
from moto import mock_aws

from tradelake.adapters.lake_files import parse_gap_lines
from tradelake.cursor import Cursor
from tradelake.model import Gap, Trade, trade_key
from tradelake.pack import unpack
from tradelake.schema import Column
from tradelake.simulator.tape import Tape
from tradelake.verify import check

ROOT = Path(__file__).resolve().parents[1]

REGION = "eu-west-1"
BUCKET = "tradelake-test-data"
STREAM = "tradelake-test-trades"
SWITCH = "/tradelake/test/ingest"
CURSOR_KEY = "_state/cursor.json"
SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")
START_NS = 1_795_737_600_000_000_000  # 2026-11-27T00:00Z
HOUR_NS = 3_600_000_000_000
SAFETY_MARGIN_S = 0.5
MOTO_CONFIG: Any = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


@dataclass
class LambdaContext:
    """What the handler and Powertools read from a Lambda context; the deadline is real time."""

    run_s: float = 60.0
    function_name: str = "tradelake-test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:tradelake-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid4()))
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.run_s + SAFETY_MARGIN_S

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class Aws:
    s3: Any
    firehose: Any
    ssm: Any

    def switch(self, value: str) -> None:
        self.ssm.put_parameter(Name=SWITCH, Value=value, Type="String", Overwrite=True)

    def objects(self, prefix: str) -> list[bytes]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        keys = sorted(o["Key"] for page in pages for o in page.get("Contents", []))
        return [self.s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys]

    def delivered(self) -> list[Trade]:
        """Every trade in every record that reached Firehose."""
        return [t for data in self.objects("firehose/") for t in unpack(data)]

    def gaps(self) -> list[Gap]:
        return [g for data in self.objects("gaps/") for g in parse_gap_lines(data.decode(), "s3")]

    def checkpoint(self) -> Cursor:
        body = self.s3.get_object(Bucket=BUCKET, Key=CURSOR_KEY)["Body"].read()
        return Cursor.from_json(json.loads(body))


def moto_credentials(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Dummy credentials and region (boto3 never finds real ones), plus a function's ``env``."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        **env,
    }.items():
        monkeypatch.setenv(name, value)


@contextmanager
def partitions_world(
    monkeypatch: pytest.MonkeyPatch, database: str, bucket: str, table: str = "trades_stored"
) -> Iterator[None]:
    """moto, with the environment the partitions function has (functions/partitions/handler.py)."""
    moto_credentials(
        monkeypatch,
        GLUE_DATABASE=database,
        TRADES_TABLE=table,
        GAPS_TABLE="gaps",
        DATA_BUCKET=bucket,
        POWERTOOLS_METRICS_NAMESPACE="tradelake",
    )
    with mock_aws():
        yield


def s3_notification(bucket: str, keys: Iterable[str]) -> dict[str, Any]:
    """S3's ObjectCreated event for ``keys``, which S3 sends URL-encoded ('+' for a space)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {"key": quote_plus(k, safe="/"), "size": 1024},
                },
            }
            for k in keys
        ]
    }


PARQUET_SERDE = {
    "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    "Parameters": {"serialization.format": "1"},
}


def parquet_table_input(
    name: str, columns: Sequence[Column], keys: Sequence[Column], location: str
) -> dict[str, Any]:
    """A Glue TableInput with the storage settings of the Parquet tables in resources/*.yml."""
    return {
        "Name": name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"},
        "PartitionKeys": [{"Name": c.name, "Type": c.type, "Comment": c.comment} for c in keys],
        "StorageDescriptor": {
            "Columns": [{"Name": c.name, "Type": c.type, "Comment": c.comment} for c in columns],
            "Location": location,
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "Compressed": False,
            "SerdeInfo": PARQUET_SERDE,
            "StoredAsSubDirectories": False,
        },
    }


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/handler.py afresh: a cold start that reads this environment."""
    spec = importlib.util.spec_from_file_location(
        f"{name}_handler_{uuid4().hex}", ROOT / "functions" / name / "handler.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "logger"):
        to_stdout(module.logger)  # a cold start writes to this test's stdout
    return module


def to_stdout(logger: Any) -> None:
    """Point a Powertools ``Logger`` at the current ``sys.stdout`` (a test's capture).

    Powertools reuses the logging logger of its service, and the handler that the first Logger
    of that service made still writes to the stdout of that time. Not ``setStream``: it flushes
    the old stream, which that test's capture may have closed.
    """
    logger.registered_handler.stream = sys.stdout


def emf_values(out: str) -> dict[str, float]:
    """Each metric's total over the EMF documents Powertools printed."""
    values: dict[str, float] = {}
    for line in out.splitlines():
        if '"_aws"' in line:
            doc = json.loads(line)
            for d in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = doc[d["Name"]]
                total = sum(value) if isinstance(value, list) else value
                values[d["Name"]] = values.get(d["Name"], 0) + total
    return values


def load_handler(monkeypatch: pytest.MonkeyPatch, url: str) -> ModuleType:
    """A cold start of the ingest handler against ``url`` and the moto resources."""
    monkeypatch.setenv("TRADELAKE_SYMBOLS", ",".join(SYMBOLS))
    moto_credentials(
        monkeypatch,
        PHEMEX_URL=url,
        DELIVERY_STREAM=STREAM,
        DATA_BUCKET=BUCKET,
        CURSOR_KEY=CURSOR_KEY,
        INGEST_SWITCH_PARAMETER=SWITCH,
        SAFETY_MARGIN_S=str(SAFETY_MARGIN_S),
        METRICS_INTERVAL_S="0.5",
        POWERTOOLS_METRICS_NAMESPACE="tradelake-test",
    )
    return load_function("ingest")


def step(
    module: ModuleType, aws: Aws, event: dict[str, Any] | None, run_s: float, **ports: Any
) -> dict[str, Any]:
    """One Ingest state: the handler with the moto clients and a context lasting ``run_s``."""
    result: dict[str, Any] = module.handler(
        event, LambdaContext(run_s), firehose=aws.firehose, s3=aws.s3, ssm=aws.ssm, **ports
    )
    json.dumps(result)  # the state machine passes it on as JSON
    return result


def assert_complete(tape: Tape, aws: Aws) -> None:
    delivered = aws.delivered()
    keys = [trade_key(t) for t in delivered]
    assert len(keys) == len(set(keys)), "a trade_key reached Firehose twice"
    rows: dict[str, list[tuple[int, str]]] = {}
    for t, key in zip(delivered, keys, strict=True):
        rows.setdefault(t.symbol, []).append((t.ts_ns, key))
    for result in check(tape, rows, aws.gaps()):
        assert result.complete, result
        assert result.in_lake > 100, result


@contextmanager
def aws_world(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """moto with the stack's data resources; Step Functions really executes state machines."""
    moto_credentials(monkeypatch)
    with mock_aws(config=MOTO_CONFIG):
        aws = Aws(
            boto3.client("s3", region_name=REGION),
            boto3.client("firehose", region_name=REGION),
            boto3.client("ssm", region_name=REGION),
        )
        aws.s3.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        aws.firehose.create_delivery_stream(
            DeliveryStreamName=STREAM,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": f"arn:aws:s3:::{BUCKET}",
                "Prefix": "firehose/",
            },
        )
        aws.switch("on")
        yield aws
