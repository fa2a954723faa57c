"""The S3 cursor checkpoint (merged with the payload cursor) and the S3 gap ledger, on moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aws_world import moto_credentials
from tradelake.adapters.lake_files import JsonlGapLedger, parse_gap_lines, read_gaps
from tradelake.adapters.s3_state import S3CursorStore, S3GapLedger
from tradelake.cursor import Cursor, SymbolCursor
from tradelake.model import Gap, parse_fixed

BUCKET = "tradelake-test-data"
KEY = "_state/cursor.json"
T = 1_795_737_600_000_000_000


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    moto_credentials(monkeypatch)
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        yield client


def cursor(**symbols: tuple[int, int]) -> Cursor:
    """``symbol=(ts_ns, n)``: n buys of 1 at 100 taken at ts_ns."""
    one, hundred = parse_fixed("1"), parse_fixed("100")
    return Cursor(
        {s: SymbolCursor(ts, {("buy", hundred, one): n}) for s, (ts, n) in symbols.items()}
    )


def test_no_checkpoint_and_no_payload_is_an_empty_cursor(s3: Any) -> None:
    assert S3CursorStore(s3, BUCKET, KEY, None).load() == Cursor()


def test_no_checkpoint_uses_the_payload_cursor(s3: Any) -> None:
    payload = cursor(BTCUSD=(T, 1))
    store = S3CursorStore(s3, BUCKET, KEY, payload)
    assert store.load() == payload
    loaded = store.load()
    loaded.symbols["BTCUSD"].ts_ns += 1
    assert store.load() == payload, "load hands out a copy"


def test_save_writes_json_that_load_reads_back(s3: Any) -> None:
    saved = cursor(BTCUSD=(T, 2), BTCUSDT=(T + 5, 1))
    S3CursorStore(s3, BUCKET, KEY, None).save(saved)
    obj = s3.get_object(Bucket=BUCKET, Key=KEY)
    assert obj["ContentType"] == "application/json"
    assert json.loads(obj["Body"].read()) == saved.to_json()
    assert S3CursorStore(s3, BUCKET, KEY, None).load() == saved


def test_load_takes_the_newer_of_payload_and_checkpoint_per_symbol(s3: Any) -> None:
    # after a Lambda timeout the checkpoint is ahead of the payload; the other way round after
    # the checkpoint was deleted or for a symbol added to the payload
    S3CursorStore(s3, BUCKET, KEY, None).save(cursor(BTCUSD=(T + 10, 1), BTCUSDT=(T, 3)))
    payload = cursor(BTCUSD=(T, 5), BTCUSDT=(T, 1), sBTCUSDT=(T, 1))
    merged = S3CursorStore(s3, BUCKET, KEY, payload).load()
    assert merged == cursor(BTCUSD=(T + 10, 1), BTCUSDT=(T, 3), sBTCUSDT=(T, 1))


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"version": 2}',
        b'{"version": 1, "symbols": {}}',
        b'{"version": 2, "symbols": {"X": {}}}',
    ],
)
def test_a_corrupt_checkpoint_is_a_clear_error_naming_the_object(s3: Any, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=body)
    with pytest.raises(ValueError, match=rf"s3://{BUCKET}/_state/cursor\.json is corrupt"):
        S3CursorStore(s3, BUCKET, KEY, cursor(BTCUSD=(T, 1))).load()


def test_other_s3_errors_are_not_mistaken_for_no_checkpoint(s3: Any) -> None:
    with pytest.raises(Exception, match="NoSuchBucket"):
        S3CursorStore(s3, "no-such-bucket", KEY, None).load()


GAPS = [
    Gap("BTCUSD", T, T + 100, T + 500, "snapshot_short"),
    Gap("BTCUSDT", T + 7, T + 7, T + 400, "out_of_order"),
]


def test_gaps_land_as_one_jsonl_object_per_call_in_the_local_format(
    s3: Any, tmp_path: Path
) -> None:
    ledger = S3GapLedger(s3, BUCKET)
    ledger.record(GAPS)
    ledger.record([])
    ledger.record(GAPS[:1])
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="gaps/")["Contents"]]
    assert len(keys) == 2
    first = f"gaps/{T + 400:019d}-"
    assert any(k.startswith(first) and k.endswith(".jsonl") for k in keys), keys
    assert all(len(k.rsplit("-", 1)[1]) == len("0" * 32 + ".jsonl") for k in keys)
    found = sorted(
        g
        for k in keys
        for g in parse_gap_lines(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read().decode(), k)
    )
    assert found == sorted([*GAPS, GAPS[0]])

    # byte for byte what the local ledger writes
    JsonlGapLedger(tmp_path).record(GAPS)
    (local,) = (tmp_path / "gaps").iterdir()
    key = next(k for k in keys if k.startswith(first))
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == local.read_bytes()
    assert read_gaps(tmp_path) == GAPS
