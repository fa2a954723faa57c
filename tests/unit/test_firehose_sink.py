"""The Firehose sink under partial failures and throttling, with a fake Firehose and with moto.

What must hold whatever Firehose does: nothing is lost, the sink never sends a record twice
itself, and the cursor (advanced by what ``flush`` returns) is never ahead of what Firehose
acknowledged.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from aws_world import moto_credentials
from tradelake.adapters.aws_errors import error_code
from tradelake.adapters.firehose_sink import (
    DELIVERY_BACKOFF,
    FirehoseDeliveryError,
    FirehoseSink,
)
from tradelake.backoff import Backoff
from tradelake.cursor import Cursor
from tradelake.model import Trade
from tradelake.pack import unpack

STREAM = "tradelake-test-trades"
TS_NS = 1_795_737_600_000_000_000
SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")


def trades(n: int, start: int = 0) -> list[Trade]:
    """Distinct trades in time order, several symbols, some sharing a nanosecond."""
    return [
        Trade(
            SYMBOLS[i % 3],
            TS_NS + (i // 2) * 1_000,
            "buy" if i % 5 else "sell",
            (30_000 + i % 7) * 10**10,
            (1 + i % 3) * 10**10,
            0,
            TS_NS + i * 1_000 + 7,
            i,
            "incremental",
        )
        for i in range(start, start + n)
    ]


def throttling(code: str = "ServiceUnavailableException") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "Slow down."}}, "PutRecordBatch")


class FakeFirehose:
    """PutRecordBatch that refuses the entries ``refuse`` picks, or throttles whole calls.

    ``refuse(call_number, entry_index)`` and ``throttle(call_number)`` decide; ``delivered``
    holds the data of every accepted record, ``sends`` counts every record it was handed.
    """

    def __init__(
        self,
        refuse: Any = lambda call, i: False,
        throttle: Any = lambda call: False,
    ) -> None:
        self.refuse, self.throttle = refuse, throttle
        self.calls = 0
        self.delivered: list[bytes] = []
        self.accepted: set[bytes] = set()
        self.trades: list[Trade] = []
        self.sends: Counter[bytes] = Counter()
        self.sent_after_ack = 0

    def put_record_batch(self, *, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> Any:
        assert DeliveryStreamName == STREAM
        assert 0 < len(Records) <= 500
        assert sum(len(r["Data"]) for r in Records) <= 4 * 2**20
        call = self.calls
        self.calls += 1
        if self.throttle(call):
            raise throttling()
        responses: list[Mapping[str, str]] = []
        for i, r in enumerate(Records):
            data = r["Data"]
            self.sends[data] += 1
            if data in self.accepted:
                self.sent_after_ack += 1
            if self.refuse(call, i):
                responses.append({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "x"})
            else:
                self.delivered.append(data)
                self.accepted.add(data)
                self.trades += unpack(data)
                responses.append({"RecordId": f"{call}-{i}"})
        failed = sum("ErrorCode" in r for r in responses)
        return {"FailedPutCount": failed, "Encrypted": False, "RequestResponses": responses}

    def delivered_trades(self) -> list[Trade]:
        return self.trades


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def sink(client: Any, sleeps: Sleeps | None = None, **kwargs: Any) -> FirehoseSink:
    return FirehoseSink(
        client,
        STREAM,
        sleep=sleeps if sleeps is not None else Sleeps(),
        rng=random.Random(1),
        **kwargs,
    )


def covered(cursor: Cursor, t: Trade) -> bool:
    """Whether the cursor claims ``t`` is in the lake (a restart would not write it again)."""
    c = cursor.symbols.get(t.symbol)
    if c is None:
        return False
    return t.ts_ns < c.ts_ns or (
        t.ts_ns == c.ts_ns and t.k < c.counts.get((t.side, t.price, t.qty), 0)
    )


def test_a_healthy_stream_gets_every_trade_once_in_packed_records() -> None:
    fake = FakeFirehose()
    s = sink(fake)
    batch = trades(1_234)
    s.add(batch)
    assert s.flush() == batch
    assert fake.delivered_trades() == batch
    assert [len(unpack(d)) for d in fake.delivered] == [500, 500, 234]
    assert fake.calls == 1
    assert s.pending == 0
    assert s.counters() == {
        "FirehoseRecordsSent": 3,
        "FirehoseFailedRecords": 0,
        "FirehoseRetries": 0,
        "FirehoseThrottles": 0,
        "FirehoseNetworkErrors": 0,
    }
    assert s.flush() == []


def test_only_the_refused_entries_are_sent_again() -> None:
    fake = FakeFirehose(refuse=lambda call, i: call == 0 and i == 1)
    sleeps = Sleeps()
    s = sink(fake, sleeps)
    batch = trades(1_500)
    s.add(batch)
    assert s.flush() == batch
    assert fake.calls == 2
    assert max(fake.sends.values()) == 2
    assert sorted(fake.sends.values()) == [1, 1, 2]
    assert sorted(fake.delivered_trades()) == sorted(batch)
    assert s.failed_records == 1
    assert s.retries == 1
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 0.1


def test_a_throttled_call_is_retried_with_growing_capped_jittered_backoff() -> None:
    fake = FakeFirehose(throttle=lambda call: call < 6)
    sleeps = Sleeps()
    s = sink(fake, sleeps, backoff=Backoff(attempts=8, base_s=0.1, cap_s=1.0))
    batch = trades(10)
    s.add(batch)
    assert s.flush() == batch
    assert s.throttles == 6
    assert fake.delivered_trades() == batch
    caps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert len(sleeps) == len(caps)
    assert all(0 <= slept <= cap for slept, cap in zip(sleeps, caps, strict=True))


def test_a_record_refused_behind_acked_ones_keeps_its_trades_and_later_ones_buffered() -> None:
    # the second of three records fails every time in the first flush, then Firehose recovers
    healthy = False
    fake = FakeFirehose(refuse=lambda call, i: not healthy and ((call == 0 and i == 1) or call > 0))
    s = sink(fake, backoff=Backoff(attempts=3))
    batch = trades(1_200)
    s.add(batch)
    first = s.flush()
    assert first == batch[:500], "only the prefix before the refused record is acknowledged"
    assert s.pending == 700
    assert s.due(0), "a flush that left records behind wants to run again at once"
    sent_before = fake.calls
    healthy = True
    s.add(more := trades(10, start=1_200))
    assert s.flush() == batch[500:] + more
    assert fake.sent_after_ack == 0, "the third record, already acknowledged, is not sent again"
    assert fake.calls == sent_before + 1
    assert sorted(fake.delivered_trades()) == sorted(batch + more)


def test_when_the_oldest_record_keeps_failing_flush_raises_and_the_cursor_stays_put() -> None:
    fake = FakeFirehose(refuse=lambda call, i: True)
    sleeps = Sleeps()
    s = sink(fake, sleeps, backoff=Backoff(attempts=4))
    s.add(trades(10))
    with pytest.raises(
        FirehoseDeliveryError, match=r"did not accept a record of 10 trades in 4 attempts \(4 sends"
    ):
        s.flush()
    assert fake.calls == 4
    assert len(sleeps) == 3
    assert s.pending == 10, "nothing acknowledged, nothing dropped: a later flush may retry"


def test_an_error_that_is_not_throttling_is_raised_at_once() -> None:
    class Missing:
        calls = 0

        def put_record_batch(self, **kwargs: Any) -> Any:
            self.calls += 1
            raise ClientError(
                {"Error": {"Code": "ResourceNotFoundException", "Message": "no stream"}},
                "PutRecordBatch",
            )

    client = Missing()
    s = sink(client)
    s.add(trades(3))
    with pytest.raises(ClientError) as caught:
        s.flush()
    assert error_code(caught.value) == "ResourceNotFoundException"
    assert client.calls == 1
    assert s.pending == 3


ENDPOINT = "https://firehose.eu-west-1.amazonaws.com/"


class Failing:
    """Fails the first calls as a whole with ``errors`` (one per call), then is ``fake``.

    ``stored``: each failing call first delivers its records, as Firehose does when the answer
    is lost on the way back (a read timeout).
    """

    def __init__(self, fake: FakeFirehose, errors: list[Exception], stored: bool = False) -> None:
        self.fake, self.errors, self.stored = fake, errors, stored
        self.calls = 0

    def put_record_batch(self, **kwargs: Any) -> Any:
        call = self.calls
        self.calls += 1
        if call < len(self.errors):
            if self.stored:
                self.fake.put_record_batch(**kwargs)
            raise self.errors[call]
        return self.fake.put_record_batch(**kwargs)


def test_network_errors_and_read_timeouts_are_retried_by_the_sink_as_whole_calls() -> None:
    fake = FakeFirehose()
    client = Failing(
        fake,
        [
            EndpointConnectionError(endpoint_url=ENDPOINT),
            ReadTimeoutError(endpoint_url=ENDPOINT),
            ConnectionClosedError(endpoint_url=ENDPOINT),
        ],
    )
    sleeps = Sleeps()
    s = sink(client, sleeps)
    batch = trades(1_200)  # three records, one call
    s.add(batch)
    assert s.flush() == batch
    assert client.calls == 4
    assert s.network_errors == 3
    assert s.counters()["FirehoseNetworkErrors"] == 3
    assert s.throttles == 0
    assert s.retries == 3 * 3, "every record of the call was sent again, three times"
    assert fake.delivered_trades() == batch, "nothing was stored by the failed calls"
    assert len(sleeps) == 3


def test_a_read_timeout_after_firehose_stored_the_records_sends_them_again() -> None:
    fake = FakeFirehose()
    client = Failing(fake, [ReadTimeoutError(endpoint_url=ENDPOINT)], stored=True)
    s = sink(client)
    batch = trades(10)
    s.add(batch)
    assert s.flush() == batch, "the sink cannot know the records were stored: it sends again"
    assert fake.delivered_trades() == batch + batch, "stored twice: same trade_key, read once"
    assert fake.sent_after_ack == 1
    assert s.network_errors == 1


def test_a_server_error_of_the_whole_call_is_retried_by_the_sink() -> None:
    error = ClientError(
        {
            "Error": {"Code": "SomethingWentWrong", "Message": "oops"},
            "ResponseMetadata": {"HTTPStatusCode": 502},
        },
        "PutRecordBatch",
    )
    fake = FakeFirehose()
    s = sink(Failing(fake, [error]))
    s.add(batch := trades(5))
    assert s.flush() == batch
    assert s.throttles == 1


@pytest.mark.parametrize(
    "error",
    [ReadTimeoutError(endpoint_url=ENDPOINT), EndpointConnectionError(endpoint_url=ENDPOINT)],
    ids=["read-timeout", "no-connection"],
)
def test_a_call_failing_on_the_network_for_ever_is_made_exactly_backoff_attempts_times(
    error: Exception,
) -> None:
    client = Failing(FakeFirehose(), [error] * 100)
    sleeps = Sleeps()
    s = sink(client, sleeps)
    s.add(trades(10))
    with pytest.raises(FirehoseDeliveryError, match=type(error).__name__):
        s.flush()
    assert client.calls == DELIVERY_BACKOFF.attempts == 8
    assert len(sleeps) == DELIVERY_BACKOFF.attempts - 1
    assert s.pending == 10


def test_due_by_count_and_by_age() -> None:
    now = [1_000]
    s = FirehoseSink(FakeFirehose(), STREAM, max_trades=5, max_age_s=2.0, clock=lambda: now[0])
    assert not s.due(10**18)
    s.add(trades(4))
    assert not s.due(1_000 + 1_999_999_999)
    assert s.due(1_000 + 2_000_000_000)
    s.add(trades(1, start=4))
    assert s.due(1_000)


def test_a_full_record_is_due_after_the_minimum_age_not_before() -> None:
    """500 trades make a full record: worth a call once they are 5 s old, not every 500."""
    now = [0]
    s = FirehoseSink(FakeFirehose(), STREAM, clock=lambda: now[0])
    s.add(trades(499))
    assert not s.due(60 * 10**9), "499 trades a minute old wait for a full record"
    assert s.due(120 * 10**9), "or for the maximum age"
    s = FirehoseSink(FakeFirehose(), STREAM, clock=lambda: now[0])
    s.add(trades(500))
    assert not s.due(4_999_999_999), "a burst is not flushed every 500 trades"
    assert s.due(5 * 10**9)


@st.composite
def failure_plans(draw: st.DrawFn) -> tuple[float, float, int]:
    refuse = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    throttle = draw(st.sampled_from([0.0, 0.2, 0.6]))
    return refuse, throttle, draw(st.integers(0, 2**32))


@settings(max_examples=150, deadline=None)
@given(
    chunks=st.lists(st.integers(1, 1_300), min_size=1, max_size=6),
    plan=failure_plans(),
    max_attempts=st.integers(1, 4),
)
def test_whatever_firehose_does_nothing_is_lost_sent_twice_or_claimed_early(
    chunks: list[int], plan: tuple[float, float, int], max_attempts: int
) -> None:
    refuse_p, throttle_p, seed = plan
    rng = random.Random(seed)
    outage = True
    fake = FakeFirehose(
        refuse=lambda call, i: outage and rng.random() < refuse_p,
        throttle=lambda call: outage and rng.random() < throttle_p,
    )
    s = sink(fake, backoff=Backoff(attempts=max_attempts))
    added: list[Trade] = []
    acked: list[Trade] = []
    cursor = Cursor()

    def check() -> None:
        assert acked == added[: len(acked)], "flush returns a prefix, in add order"
        delivered = set(fake.delivered_trades())
        assert all(t in delivered for t in acked), "returned only what Firehose accepted"
        assert all(t in delivered for t in added if covered(cursor, t)), "cursor not ahead"
        assert fake.sent_after_ack == 0, "the sink never sends an accepted record again"
        assert s.pending == len(added) - len(acked)

    def flush() -> None:
        try:
            got = s.flush()
        except FirehoseDeliveryError:
            got = []
        acked.extend(got)
        cursor.advance(got)
        check()

    for n in chunks:
        batch = trades(n, start=len(added))
        s.add(batch)
        added += batch
        flush()

    outage = False  # Firehose recovers: everything still buffered gets through, once
    while s.pending:
        flush()
    assert acked == added
    delivered = fake.delivered_trades()
    assert sorted(delivered) == sorted(added), "nothing lost, nothing duplicated"
    assert len(delivered) == len(set(delivered))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    moto_credentials(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        firehose = boto3.client("firehose", region_name="eu-west-1")
        s3.create_bucket(
            Bucket="tradelake-data",
            CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
        )
        firehose.create_delivery_stream(
            DeliveryStreamName=STREAM,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/firehose",
                "BucketARN": "arn:aws:s3:::tradelake-data",
                "Prefix": "raw/",
            },
        )
        yield s3, firehose


def test_moto_firehose_delivers_every_trade_as_exact_json_lines(aws: tuple[Any, Any]) -> None:
    s3, firehose = aws
    s = sink(firehose, max_trades=1_000)
    batch = trades(2_345)
    cursor = Cursor()
    for i in range(0, len(batch), 700):
        s.add(batch[i : i + 700])
        got = s.flush()
        cursor.advance(got)
    assert s.pending == 0
    objects = s3.list_objects_v2(Bucket="tradelake-data", Prefix="raw/")["Contents"]
    delivered = [
        t
        for o in objects
        for t in unpack(s3.get_object(Bucket="tradelake-data", Key=o["Key"])["Body"].read())
    ]
    assert sorted(delivered) == sorted(batch)
    assert len(set(delivered)) == len(delivered)
    assert all(covered(cursor, t) for t in batch)
    assert s.records_sent == sum(-(-n // 500) for n in (700, 700, 700, 245))
