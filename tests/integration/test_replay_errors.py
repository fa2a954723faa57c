"""``tradelake replay-errors`` against moto: S3 holds Firehose error objects in the documented
shapes, Firehose (moto) receives the re-sent trades and delivers them under ``redelivered/``."""

from __future__ import annotations

import base64
import json
import time
from argparse import Namespace
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aws_world import moto_credentials
from tradelake.backfill import time_arg
from tradelake.cli import parser
from tradelake.model import Trade
from tradelake.pack import pack, trade_line, unpack
from tradelake.replay_cli import replay_command

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's
STAGE = "test"
BUCKET = f"tradelake-{STAGE}-{ACCOUNT}-{REGION}"
STREAM = f"tradelake-{STAGE}-trades"
TS_NS = 1_795_787_100_000_000_000  # 2026-11-27T13:45Z
ARRIVAL_MS = TS_NS // 1_000_000 + 2_000
DAY = "year=2026/month=11/day=27"
CONVERSION_KEY = f"errors/format-conversion-failed/{DAY}/{STREAM}-1-2026-11-27-13-50-00-aaaa"
PROCESSING_KEY = f"errors/processing-failed/{DAY}/{STREAM}-1-2026-11-27-13-50-00-bbbb"
PARTITIONING_KEY = f"errors/processing-failed/{DAY}/{STREAM}-1-2026-11-27-13-55-00-cccc"
FOREIGN_KEY = f"errors/processing-failed/{DAY}/{STREAM}-1-2026-11-27-13-58-00-dddd"
ALREADY_KEY = f"errors/replayed/processing-failed/{DAY}/{STREAM}-1-2026-11-26-10-00-00-eeee"


def trades(n: int, start: int, symbol: str = "BTCUSD") -> list[Trade]:
    return [
        Trade(symbol, TS_NS + start + i, "buy", 329_915_000_000_000, 40 * 10**10, 0, TS_NS, i, "x")
        for i in range(n)
    ]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def conversion_failure(data: bytes) -> dict[str, Any]:
    """The documented shape of a data format conversion failure (note ``ErrorCode``)."""
    return {
        "attemptsMade": 1,
        "arrivalTimestamp": ARRIVAL_MS,
        "ErrorCode": "DataFormatConversion.ParseError",
        "ErrorMessage": "Encountered malformed JSON.",
        "attemptEndingTimestamp": ARRIVAL_MS + 300,
        "rawData": b64(data),
        "sequenceNumber": "49546986683135544286507457936321625675700192471156785154",
        "subSequenceNumber": 0,
        "dataCatalogTable": {
            "catalogId": ACCOUNT,
            "databaseName": "tradelake_test",
            "tableName": "trades_stored",
            "region": REGION,
            "versionId": "LATEST",
            "catalogArn": f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog",
        },
    }


def processing_failure(data: bytes, code: str, message: str) -> dict[str, Any]:
    """The documented shape of a processing failure (``errorCode``); dynamic partitioning
    failures are read the same way (the documentation gives them no other schema)."""
    return {
        "attemptsMade": 4,
        "arrivalTimestamp": ARRIVAL_MS,
        "errorCode": code,
        "errorMessage": message,
        "attemptEndingTimestamp": ARRIVAL_MS + 300_000,
        "rawData": b64(data),
        "lambdaArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:none",
    }


def body(*documents: dict[str, Any]) -> bytes:
    """Firehose's error object: one JSON document a line."""
    return "".join(json.dumps(d) + "\n" for d in documents).encode()


CONVERTED = trades(3, 0)
"""Three trades that failed Parquet conversion, one (deaggregated) line a record."""
PACKED = trades(5, 100, "sBTCUSDT")
"""A whole packed record that failed deaggregation."""
PARTITIONED = trades(2, 200, "BTCUSDT")
"""Two lines whose partition keys could not be extracted."""
FOREIGN_GOOD = trades(1, 300)
"""A good line in the object that also holds something that is not ours."""


@dataclass
class World:
    s3: Any
    session: Any

    def put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def redelivered(self) -> list[Trade]:
        """Every trade Firehose (moto) received, from what it delivered under redelivered/."""
        return [
            t
            for key in self.keys("redelivered/")
            for t in unpack(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        ]

    def error_objects(self) -> None:
        self.put(
            CONVERSION_KEY, body(*(conversion_failure(trade_line(t).encode()) for t in CONVERTED))
        )
        self.put(
            PROCESSING_KEY,
            body(
                processing_failure(
                    pack(PACKED)[0].data,
                    "RecordDeAggregation.Failed",
                    "Deaggregation of the record failed.",
                )
            ),
        )
        self.put(
            PARTITIONING_KEY,
            body(
                *(
                    processing_failure(
                        trade_line(t).encode(),
                        "DynamicPartitioning.MetadataExtractionFailed",
                        "Non JSON record provided",
                    )
                    for t in PARTITIONED
                )
            ),
        )
        self.put(
            FOREIGN_KEY,
            body(
                processing_failure(b'{"hello": "world"}\n', "X", "not ours"),
                processing_failure(trade_line(FOREIGN_GOOD[0]).encode(), "X", "ours"),
            ),
        )
        self.put(ALREADY_KEY, body(processing_failure(pack(trades(1, 900))[0].data, "X", "old")))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    moto_credentials(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        boto3.client("firehose", region_name=REGION).create_delivery_stream(
            DeliveryStreamName=STREAM,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/firehose",
                "BucketARN": f"arn:aws:s3:::{BUCKET}",
                "Prefix": "redelivered/",
            },
        )
        yield World(s3, boto3.session.Session(region_name=REGION))


def args(*argv: str) -> Namespace:
    return parser().parse_args(["replay-errors", "--stage", STAGE, "--region", REGION, *argv])


def test_replay_re_sends_every_trade_that_parses_and_moves_what_was_fully_replayed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.error_objects()

    code = replay_command(args(), world.session)

    assert code == 1, "an object held something that is not ours: it is kept, exit 1"
    resent = CONVERTED + PACKED + PARTITIONED + FOREIGN_GOOD
    assert sorted(world.redelivered()) == sorted(resent)
    assert world.keys("errors/") == sorted(
        [
            FOREIGN_KEY,  # kept where it is, for a person to look at
            ALREADY_KEY,  # never read again
            CONVERSION_KEY.replace("errors/", "errors/replayed/", 1),
            PROCESSING_KEY.replace("errors/", "errors/replayed/", 1),
            PARTITIONING_KEY.replace("errors/", "errors/replayed/", 1),
        ]
    )
    moved = world.s3.get_object(
        Bucket=BUCKET, Key=CONVERSION_KEY.replace("errors/", "errors/replayed/", 1)
    )["Body"].read()
    assert moved == body(*(conversion_failure(trade_line(t).encode()) for t in CONVERTED))
    out, err = capsys.readouterr()
    assert out.strip() == (
        "4 error object(s), 8 error record(s): 11 trade(s) re-sent, 1 line(s) did not parse; "
        "3 object(s) moved to errors/replayed/, 1 kept under errors/"
    )
    assert f"kept s3://{BUCKET}/{FOREIGN_KEY}: X: not a trade line" in err
    assert "hello" in err


def test_a_second_run_reads_only_what_was_kept(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.error_objects()
    replay_command(args(), world.session)
    capsys.readouterr()

    assert replay_command(args(), world.session) == 1

    assert capsys.readouterr().out.startswith(
        "1 error object(s), 2 error record(s): 1 trade(s) re-sent, 1 line(s) did not parse; "
        "0 object(s) moved"
    )
    # The kept object's good trade went again: the same trade_key, which readers keep once.
    assert sorted(world.redelivered()).count(FOREIGN_GOOD[0]) == 2


def test_a_dry_run_sends_nothing_and_moves_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.error_objects()
    before = world.keys("")

    assert replay_command(args("--dry-run"), world.session) == 1

    assert world.keys("") == before
    assert world.redelivered() == []
    assert capsys.readouterr().out.strip() == (
        "4 error object(s), 8 error record(s): 11 trade(s) to re-send (dry run), 1 line(s) "
        "did not parse; 0 object(s) moved to errors/replayed/, 1 kept under errors/"
    )


def test_since_replays_only_the_objects_written_from_then_on(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.put(
        CONVERSION_KEY, body(*(conversion_failure(trade_line(t).encode()) for t in CONVERTED))
    )
    time.sleep(1.1)  # S3 times have whole seconds
    since = datetime.now(UTC).replace(microsecond=0)
    world.put(
        PROCESSING_KEY, body(processing_failure(pack(PACKED)[0].data, "RecordDeAggregation", "x"))
    )

    assert replay_command(args("--since", since.isoformat()), world.session) == 0

    assert sorted(world.redelivered()) == sorted(PACKED)
    assert world.keys("errors/") == sorted(
        [CONVERSION_KEY, PROCESSING_KEY.replace("errors/", "errors/replayed/", 1)]
    )
    assert capsys.readouterr().out.startswith("1 error object(s), 1 error record(s): 5 trade(s)")
    later = (since + timedelta(days=1)).isoformat()
    assert replay_command(args("--since", later), world.session) == 0
    assert capsys.readouterr().out.startswith("0 error object(s)")


def test_since_without_a_zone_is_utc() -> None:
    assert time_arg("2026-11-27T13:00") == datetime(2026, 11, 27, 13, tzinfo=UTC)
    assert args("--since", "2026-11-27T13:00").since == datetime(2026, 11, 27, 13, tzinfo=UTC)


def test_firehose_refusing_stops_the_run_and_moves_nothing_it_did_not_deliver(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.error_objects()
    before = world.keys("")
    boto3.client("firehose", region_name=REGION).delete_delivery_stream(DeliveryStreamName=STREAM)

    assert replay_command(args(), world.session) == 1

    err = capsys.readouterr().err
    assert "tradelake replay-errors: " in err
    assert "ResourceNotFound" in err
    assert world.keys("") == before


def test_a_stage_without_a_bucket_fails_with_one_line(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    other = parser().parse_args(["replay-errors", "--stage", "other", "--region", REGION])
    assert replay_command(other, world.session) == 1
    assert "NoSuchBucket" in capsys.readouterr().err
