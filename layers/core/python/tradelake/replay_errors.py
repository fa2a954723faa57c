"""Firehose error output is data: read it back, re-send its trades, set the replayed aside.

A record Firehose accepted and then could not deaggregate, partition (JQ) or convert to Parquet
lands under the stream's ``ErrorOutputPrefix``, ``errors/<error-output-type>/year=…/month=…/
day=…/`` (resources/firehose.yml), after the capture's cursor moved past it: it is the only copy
of those trades. Each error object holds one JSON document per failed record, in the shapes the
Firehose documentation gives:

- data format conversion failures (``format-conversion-failed``): ``attemptsMade``,
  ``arrivalTimestamp``, ``ErrorCode``, ``ErrorMessage``, ``attemptEndingTimestamp``,
  ``rawData``, ``sequenceNumber``, ``subSequenceNumber``, ``dataCatalogTable``;
- processing failures (``processing-failed``): ``attemptsMade``, ``arrivalTimestamp``,
  ``errorCode``, ``errorMessage``, ``attemptEndingTimestamp``, ``rawData``, ``lambdaArn``;
- dynamic partitioning failures (a JQ key that cannot be extracted, e.g.
  ``DynamicPartitioning.MetadataExtractionFailed``): the documentation shows no schema beyond
  "the record along with information about the error"; they are read like the processing shape
  (``errorCode``, ``errorMessage``, ``rawData``).

Only ``rawData`` matters here: base64 of the record as it failed, which is one of our packed
records (``tradelake.pack``: JSON lines) or, after deaggregation, one JSON line of it. Every line
is read with ``pack.read_line``; the trades that parse are sent again through the sink (their
``trade_key`` makes a re-send harmless: readers keep one row per key), and an object whose every
line parsed and whose trades Firehose acknowledged is moved under ``errors/replayed/`` (same key
after ``errors/``). An object holding anything that is not one of our lines (a ``rawData`` that
is not base64, not UTF-8, or a line ``read_line`` refuses; a document without ``rawData``) keeps
its place under ``errors/``: its trades that parse are re-sent, and the object is reported for a
person to look at. A later run re-sends those trades again, which the ``trade_key`` absorbs.
``errors/replayed/`` is never read.

This module is pure: the store of error objects and the sending are ports
(``tradelake.adapters.s3_errors``, ``tradelake.adapters.firehose_sink``).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple, Protocol

from tradelake.model import Trade
from tradelake.pack import read_line
from tradelake.ports import TradeSink

ERRORS_PREFIX: Final = "errors/"
"""The stream's ErrorOutputPrefix up to its first expression (resources/firehose.yml)."""
REPLAYED_PREFIX: Final = "errors/replayed/"
"""Where replayed objects go. ``replayed`` is not an error-output-type Firehose writes."""


class StoredObject(NamedTuple):
    key: str
    last_modified: datetime
    """Aware (UTC): when Firehose wrote it."""


class ErrorStore(Protocol):
    """The bucket's error objects: list, read, move (the S3 adapter copies, then deletes)."""

    def list(self, prefix: str) -> Iterable[StoredObject]: ...

    def read(self, key: str) -> bytes: ...

    def move(self, key: str, to_key: str) -> None: ...


class ErrorRecord(NamedTuple):
    """One failed record of an error object."""

    code: str
    """``ErrorCode`` (format conversion) or ``errorCode`` (processing, partitioning)."""
    raw_data: str
    """``rawData``: base64 of the record as Firehose failed it."""


@dataclass(frozen=True, slots=True)
class DecodedObject:
    """What one error object holds."""

    records: int
    """Error records (documents with a ``rawData``)."""
    trades: list[Trade]
    """Every trade that parsed, in order."""
    bad: list[str]
    """What did not parse: one entry per line (or document) and why."""


@dataclass(slots=True)
class ReplayReport:
    objects: int = 0
    records: int = 0
    trades: int = 0
    """Trades re-sent (with ``dry_run``: that would be re-sent)."""
    bad_lines: int = 0
    moved: int = 0
    kept: dict[str, list[str]] = field(default_factory=dict)
    """Objects left under errors/ because something in them did not parse, and what."""

    def summary(self, dry_run: bool) -> str:
        sent = "to re-send (dry run)" if dry_run else "re-sent"
        return (
            f"{self.objects} error object(s), {self.records} error record(s): {self.trades} "
            f"trade(s) {sent}, {self.bad_lines} line(s) did not parse; {self.moved} object(s) "
            f"moved to {REPLAYED_PREFIX}, {len(self.kept)} kept under {ERRORS_PREFIX}"
        )


def replayed_key(key: str) -> str:
    """``errors/format-conversion-failed/…`` → ``errors/replayed/format-conversion-failed/…``."""
    if not key.startswith(ERRORS_PREFIX) or key.startswith(REPLAYED_PREFIX):
        raise ValueError(f"{key!r} is not an error object to replay")
    return REPLAYED_PREFIX + key[len(ERRORS_PREFIX) :]


def _documents(text: str) -> Iterator[Any]:
    """The JSON documents of ``text``, whether newline-separated or simply concatenated."""
    decoder = json.JSONDecoder()
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i == n:
            return
        document, i = decoder.raw_decode(text, i)
        yield document


def error_records(body: bytes) -> tuple[list[ErrorRecord], list[str]]:
    """The error records of an object's body (gzip or not), and what is not an error record."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    records: list[ErrorRecord] = []
    bad: list[str] = []
    try:
        text = body.decode()
        for n, document in enumerate(_documents(text), 1):
            raw = document.get("rawData") if isinstance(document, dict) else None
            if not isinstance(raw, str):
                bad.append(f"document {n} has no rawData: {json.dumps(document)[:200]}")
                continue
            code = document.get("ErrorCode", document.get("errorCode", ""))
            records.append(ErrorRecord(str(code), raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        bad.append(f"not JSON documents after {len(records)} record(s): {exc}")
    return records, bad


def decode_record(raw_data: str) -> tuple[list[Trade], list[str]]:
    """The trades of one ``rawData``, and the lines that are not trade lines (with why)."""
    try:
        data = base64.b64decode(raw_data, validate=True)
    except (binascii.Error, ValueError) as exc:
        return [], [f"rawData is not base64 ({exc}): {raw_data[:80]!r}"]
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return [], [f"rawData is not UTF-8 text: {data[:80]!r}"]
    trades: list[Trade] = []
    bad: list[str] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            trades.append(read_line(line))
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            bad.append(f"not a trade line ({exc}): {line[:200]!r}")
    return trades, bad


def decode_object(body: bytes) -> DecodedObject:
    records, bad = error_records(body)
    trades: list[Trade] = []
    for record in records:
        found, wrong = decode_record(record.raw_data)
        trades.extend(found)
        bad.extend(f"{record.code or 'no error code'}: {why}" for why in wrong)
    return DecodedObject(len(records), trades, bad)


def replay_errors(
    store: ErrorStore,
    send: Callable[[Sequence[Trade]], None],
    *,
    since: datetime | None = None,
    dry_run: bool = False,
    on_object: Callable[[str, DecodedObject], None] | None = None,
) -> ReplayReport:
    """Replay every error object (written at or after ``since``), one object at a time.

    ``send`` returns once Firehose acknowledged every trade it was given, or raises: the object
    being replayed then stays where it is, and the objects before it are already moved. With
    ``dry_run`` nothing is sent and nothing moves; the counts say what a run would do.
    """
    report = ReplayReport()
    for obj in sorted(store.list(ERRORS_PREFIX)):
        if obj.key.startswith(REPLAYED_PREFIX) or obj.key.endswith("/"):
            continue
        if since is not None and obj.last_modified < since:
            continue
        decoded = decode_object(store.read(obj.key))
        report.objects += 1
        report.records += decoded.records
        report.bad_lines += len(decoded.bad)
        if on_object:
            on_object(obj.key, decoded)
        if not dry_run and decoded.trades:
            send(decoded.trades)
        report.trades += len(decoded.trades)
        if decoded.bad:
            report.kept[obj.key] = decoded.bad
        elif not dry_run:
            store.move(obj.key, replayed_key(obj.key))
            report.moved += 1
    return report


def sender(sink: TradeSink) -> Callable[[Sequence[Trade]], None]:
    """``send`` for ``replay_errors``: add the trades, flush until the sink acknowledged them all.

    The sink owns the retries (``FirehoseSink``: refused records only, with backoff) and raises
    when a record is still refused; so does this.
    """

    def send(trades: Sequence[Trade]) -> None:
        sink.add(trades)
        acknowledged = 0
        while acknowledged < len(trades):
            done = sink.flush()
            if not done:
                raise RuntimeError(f"the sink acknowledged {acknowledged} of {len(trades)} trades")
            acknowledged += len(done)

    return send
