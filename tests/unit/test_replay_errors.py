"""Reading Firehose error objects back, and replaying them through ports (no AWS)."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from tradelake.model import Trade
from tradelake.pack import pack, trade_line
from tradelake.replay_errors import (
    ErrorRecord,
    StoredObject,
    decode_object,
    decode_record,
    error_records,
    replay_errors,
    replayed_key,
    sender,
)

TS_NS = 1_795_787_100_000_000_000
T0 = datetime(2026, 11, 27, 14, tzinfo=UTC)


def trades(n: int, start: int = 0) -> list[Trade]:
    return [
        Trade("BTCUSD", TS_NS + start + i, "sell", 10**12, 10**10, 0, TS_NS, i, "x")
        for i in range(n)
    ]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def doc(data: bytes, **fields: object) -> str:
    return json.dumps({"errorCode": "E", "errorMessage": "m", "rawData": b64(data), **fields})


class Store:
    """An in-memory bucket: key → (bytes, last modified)."""

    def __init__(self, objects: dict[str, tuple[bytes, datetime]]) -> None:
        self.objects = dict(objects)
        self.moves: list[tuple[str, str]] = []

    def list(self, prefix: str) -> Iterator[StoredObject]:
        for key, (_, at) in self.objects.items():
            if key.startswith(prefix):
                yield StoredObject(key, at)

    def read(self, key: str) -> bytes:
        return self.objects[key][0]

    def move(self, key: str, to_key: str) -> None:
        self.objects[to_key] = self.objects.pop(key)
        self.moves.append((key, to_key))


def test_a_packed_record_and_a_single_line_both_decode() -> None:
    record = pack(trades(4))[0].data
    assert decode_record(b64(record)) == (trades(4), [])
    one = trade_line(trades(1)[0]).rstrip("\n").encode()  # deaggregated, no delimiter
    assert decode_record(b64(one)) == (trades(1), [])


def test_what_is_not_ours_is_reported_line_by_line() -> None:
    good = trade_line(trades(1)[0])
    found, bad = decode_record(b64(f'{good}{{"a": 1}}\nnot json\n'.encode()))
    assert found == trades(1)
    assert len(bad) == 2
    assert "not a trade line" in bad[0]
    assert "not json" in bad[1]
    assert decode_record("***")[1][0].startswith("rawData is not base64")
    assert decode_record(b64(b"\xff\xfe"))[1][0].startswith("rawData is not UTF-8")
    altered = good.replace('"ts":', '"ts": ')  # valid JSON, not the line pack writes
    assert decode_record(b64(altered.encode()))[0] == []


def test_error_records_in_both_documented_casings_concatenated_or_gzipped() -> None:
    conversion = json.dumps({"ErrorCode": "DataFormatConversion.X", "rawData": b64(b"a")})
    processing = doc(b"b", errorCode="DynamicPartitioning.MetadataExtractionFailed")
    expected = [
        ErrorRecord("DataFormatConversion.X", b64(b"a")),
        ErrorRecord("DynamicPartitioning.MetadataExtractionFailed", b64(b"b")),
    ]
    assert error_records(f"{conversion}\n{processing}\n".encode()) == (expected, [])
    assert error_records(f"{conversion}{processing}".encode()) == (expected, [])
    assert error_records(gzip.compress(f"{conversion}\n{processing}".encode())) == (expected, [])
    records, bad = error_records(f'{conversion}\n{{"no": "raw"}}\n{{broken'.encode())
    assert records == expected[:1]
    assert "document 2 has no rawData" in bad[0]
    assert "not JSON documents" in bad[1]


def test_decode_object_counts_records_trades_and_bad_lines() -> None:
    body = "\n".join([doc(pack(trades(3))[0].data), doc(b"nope\n", errorCode="P")]).encode()
    decoded = decode_object(body)
    assert (decoded.records, decoded.trades) == (2, trades(3))
    (bad,) = decoded.bad
    assert bad.startswith("P: not a trade line")
    assert bad.endswith("'nope'")


def test_replayed_keys_keep_their_path() -> None:
    key = "errors/format-conversion-failed/year=2026/month=11/day=27/s-1-x"
    assert (
        replayed_key(key)
        == "errors/replayed/format-conversion-failed/year=2026/month=11/day=27/s-1-x"
    )
    for wrong in ("trades/x", "errors/replayed/x"):
        with pytest.raises(ValueError, match="not an error object to replay"):
            replayed_key(wrong)


def objects() -> dict[str, tuple[bytes, datetime]]:
    return {
        "errors/a/1": (doc(pack(trades(2))[0].data).encode(), T0),
        "errors/a/2": (doc(pack(trades(3, 10))[0].data).encode(), T0 + timedelta(hours=1)),
        "errors/b/3": (doc(b"alien\n").encode(), T0 + timedelta(hours=2)),
        "errors/replayed/a/0": (doc(pack(trades(1, 99))[0].data).encode(), T0),
    }


def test_since_includes_objects_written_at_that_instant() -> None:
    store, sent = Store(objects()), []
    report = replay_errors(store, sent.extend, since=T0 + timedelta(hours=1))
    assert sent == trades(3, 10)
    assert store.moves == [("errors/a/2", "errors/replayed/a/2")]
    assert (report.objects, report.moved, list(report.kept)) == (2, 1, ["errors/b/3"])


def test_a_dry_run_neither_sends_nor_moves() -> None:
    store = Store(objects())

    def send(_: Sequence[Trade]) -> None:
        raise AssertionError("a dry run sent")

    report = replay_errors(store, send, dry_run=True)
    assert store.objects == objects()
    assert store.moves == []
    assert (report.objects, report.records, report.trades, report.bad_lines) == (3, 3, 5, 1)
    assert report.moved == 0


def test_a_failed_send_stops_before_moving_that_object() -> None:
    store, calls = Store(objects()), []

    def send(batch: Sequence[Trade]) -> None:
        calls.append(list(batch))
        if len(calls) == 2:
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        replay_errors(store, send)
    assert store.moves == [("errors/a/1", "errors/replayed/a/1")]
    assert "errors/a/2" in store.objects


class Sink:
    """A sink that acknowledges at most ``per_flush`` trades a flush, or none."""

    def __init__(self, per_flush: int) -> None:
        self.per_flush, self.buffer, self.acked = per_flush, list[Trade](), list[Trade]()

    def add(self, trades: Sequence[Trade], lines: bytes | None = None) -> None:
        self.buffer.extend(trades)

    def due(self, now_ns: int) -> bool:
        return bool(self.buffer)

    def flush(self) -> Sequence[Trade]:
        done, self.buffer = self.buffer[: self.per_flush], self.buffer[self.per_flush :]
        self.acked.extend(done)
        return done


def test_sender_flushes_until_every_trade_is_acknowledged() -> None:
    sink = Sink(per_flush=2)
    sender(sink)(trades(5))
    assert sink.acked == trades(5)
    assert sink.buffer == []
    with pytest.raises(RuntimeError, match="acknowledged 0 of 1"):
        sender(Sink(per_flush=0))(trades(1))
