"""S3 notifications duplicated, reordered and batched at random, into a Glue that fails.

The partitions Lambda (moto's Glue and S3) gets every object's notification one to three times,
shuffled, some in batches, with keys that are not partitions mixed in. Glue throttles whole
calls and refuses single entries, now passing (retried inside the adapter), now not (the
invocation fails). A failed invocation is retried like Lambda's asynchronous invoke (twice,
later, so out of order again); an event that fails all three times lands in the on-failure
queue, and the daily reconcile registers what it missed. At the end every partition of every
object is in Glue exactly once, and every refusal the adapter could not absorb failed its
invocation with an error log and a count.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from aws_world import (
    REGION,
    LambdaContext,
    emf_values,
    load_function,
    parquet_table_input,
    partitions_world,
    s3_notification,
)
from chaos.suite import Chaos
from tradelake.adapters.glue_catalog import GlueCatalog
from tradelake.catalog import PartitionsNotRegisteredError
from tradelake.schema import PARTITION_KEYS, TRADE_COLUMNS

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

DATABASE = "tradelake_chaos"
BUCKET = "tradelake-chaos-lake"
TABLE = "trades_stored"
SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")
FATAL = frozenset({"AccessDeniedException", "ResourceNumberLimitExceededException"})
ATTEMPTS = 3
"""Lambda's asynchronous invoke: the first attempt and two retries, then the on-failure queue."""


class FaultyGlue:
    """moto's Glue whose BatchCreatePartition fails at random: whole calls and single entries.

    Throttling and InternalServiceException are what the adapter retries; AccessDenied (a call)
    and ResourceNumberLimitExceeded (an entry) it must not, so they fail the invocation.
    """

    CALL_FAULTS = (("ThrottlingException", 0.15), ("AccessDeniedException", 0.05))
    ENTRY_FAULTS = (
        ("InternalServiceException", 0.1),
        ("ResourceNumberLimitExceededException", 0.05),
    )

    def __init__(self, glue: Any, seed: int) -> None:
        self.glue = glue
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.fatal = 0
        """Calls with a fault the adapter must not absorb."""
        self.on = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.glue, name)

    def batch_create_partition(self, **kwargs: Any) -> Any:
        if not self.on:
            return self.glue.batch_create_partition(**kwargs)
        draw = self.rng.random()
        for code, chance in self.CALL_FAULTS:
            if draw < chance:
                self.counts[code] += 1
                self.fatal += code == "AccessDeniedException"
                raise ClientError(
                    {"Error": {"Code": code, "Message": code}}, "BatchCreatePartition"
                )
            draw -= chance
        passed: list[Any] = []
        errors: list[Any] = []
        for entry in kwargs["PartitionInputList"]:
            fault = self._entry_fault()
            if fault is None:
                passed.append(entry)
            else:
                self.counts[fault] += 1
                errors.append(
                    {"PartitionValues": entry["Values"], "ErrorDetail": {"ErrorCode": fault}}
                )
        self.fatal += any(e["ErrorDetail"]["ErrorCode"] in FATAL for e in errors)
        response = (
            self.glue.batch_create_partition(**{**kwargs, "PartitionInputList": passed})
            if passed
            else {}
        )
        return {**response, "Errors": [*response.get("Errors", []), *errors]}

    def _entry_fault(self) -> str | None:
        draw = self.rng.random()
        for code, chance in self.ENTRY_FAULTS:
            if draw < chance:
                return code
            draw -= chance
        return None


@pytest.fixture
def moto_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with partitions_world(monkeypatch, DATABASE, BUCKET, TABLE):
        yield


def notification(keys: list[str]) -> dict[str, Any]:
    return s3_notification(BUCKET, keys)


def objects(rng: random.Random, hours: int) -> tuple[list[str], set[tuple[str, ...]], list[str]]:
    """Parquet objects of the last ``hours`` hours (1–3 a partition), their partitions, and
    keys that are not partitions (temporary files, a gap file)."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    keys: list[str] = []
    odd: list[str] = []
    partitions: set[tuple[str, ...]] = set()
    for h in range(hours):
        t = now - timedelta(hours=h)
        for symbol in SYMBOLS:
            values = (symbol, f"{t:%Y}", f"{t:%m}", f"{t:%d}", f"{t:%H}")
            prefix = "trades/" + "/".join(
                f"{c.name}={v}" for c, v in zip(PARTITION_KEYS, values, strict=True)
            )
            partitions.add(values)
            keys += [
                f"{prefix}/{n}-{rng.randrange(10**9)}.parquet" for n in range(rng.randint(1, 3))
            ]
            odd.append(f"{prefix}/.{rng.randrange(10**9)}.parquet.tmp")
    odd.append("gaps/1795791983766134378-520d.jsonl")
    return keys, partitions, odd


def test_duplicated_reordered_events_into_a_failing_glue_register_each_partition_once(
    moto_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    chaos: Chaos,
) -> None:
    rng = random.Random(chaos.seed)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    moto_glue = boto3.client("glue", region_name=REGION)
    moto_glue.create_database(DatabaseInput={"Name": DATABASE})
    moto_glue.create_table(
        DatabaseName=DATABASE,
        TableInput=parquet_table_input(
            TABLE, TRADE_COLUMNS, PARTITION_KEYS, f"s3://{BUCKET}/trades/"
        ),
    )
    keys, partitions, odd = objects(rng, hours=12 * chaos.scale)
    for key in keys + odd:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"PAR1")

    # S3: each object notified 1-3 times, in any order, sometimes several records an event.
    notified = [k for k in keys + odd for _ in range(rng.choice((1, 1, 2, 3)))]
    chaos.injected["duplicate notifications"] = len(notified) - len(keys) - len(odd)
    chaos.injected["keys that are not partitions"] = sum(k in odd for k in notified)
    rng.shuffle(notified)
    queue: deque[tuple[int, dict[str, Any]]] = deque()
    while notified:
        n = rng.choice((1, 1, 1, 2, 5))
        queue.append((1, notification(notified[:n])))
        del notified[:n]

    partitions_fn: ModuleType = load_function("partitions")
    # the adapter's own retries, without the seconds of backoff
    monkeypatch.setattr(partitions_fn, "GlueCatalog", partial(GlueCatalog, sleep=lambda s: None))
    glue = FaultyGlue(moto_glue, chaos.seed)
    errors: list[str] = []
    dead_letters = []
    while queue:
        attempt, event = queue.popleft()
        fatal = glue.fatal
        error = None
        try:
            partitions_fn.handler(event, LambdaContext(), glue=glue)
        except (ClientError, PartitionsNotRegisteredError) as exc:  # Lambda retries it, later
            error = str(exc)
            errors.append(error)
            if attempt < ATTEMPTS:
                queue.insert(rng.randint(len(queue) // 2, len(queue)), (attempt + 1, event))
            else:
                dead_letters.append(event)
        # An invocation fails if and only if Glue refused something the adapter cannot absorb.
        assert (error is not None) == (glue.fatal > fatal), error
    glue.on = False  # the daily reconcile, on a calm day
    calm = {"detail-type": "Scheduled Event"}
    repaired = partitions_fn.handler(calm, LambdaContext(), glue=glue, s3=s3)
    out = capsys.readouterr().out

    chaos.injected.update({f"Glue {code}": n for code, n in glue.counts.items()})
    chaos.injected["partitions invocations retried"] = len(errors)
    chaos.injected["events to the on-failure queue"] = len(dead_letters)
    assert glue.counts["ThrottlingException"] > 0
    assert glue.fatal > 0

    # Every partition once, nothing else.
    listed = moto_glue.get_partitions(DatabaseName=DATABASE, TableName=TABLE)["Partitions"]
    assert sorted(tuple(p["Values"]) for p in listed) == sorted(partitions)

    # Every fault that failed an invocation said what it was; the rest are counted.
    refused = [e for e in errors if "not registered" in e]
    assert all("ResourceNumberLimitExceededException" in e for e in refused)
    assert all("AccessDeniedException" in e for e in errors if e not in refused)
    assert out.count('"partition not registered"') >= len(refused)
    metrics = emf_values(out)
    assert repaired["created"] == repaired["missing"] == metrics.get("PartitionsRepaired", 0)
    assert metrics["SkippedKeys"] >= chaos.injected["keys that are not partitions"]
