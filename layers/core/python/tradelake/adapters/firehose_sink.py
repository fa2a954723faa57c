"""The AWS trade sink: packed JSON-line records to Firehose with PutRecordBatch.

Delivery guarantee, and how the cursor stays honest:

- trades are buffered in the order they are added; a flush packs the new ones into records
  (``tradelake.pack``: ≤ 500 trades, ≤ 1,000 KiB) and sends every unacknowledged record in
  PutRecordBatch calls (≤ 500 records, ≤ 4 MiB);
- a partial failure (``FailedPutCount`` > 0) is retried for the failed entries ONLY, and a call
  that failed as a whole for a passing reason is retried as a whole: throttling
  (``ServiceUnavailableException``, ``ThrottlingException``, ...), a server error (HTTP 5xx), or a
  network error (botocore's ``ConnectionError`` and ``HTTPClientError`` families:
  ``EndpointConnectionError``, ``ConnectTimeoutError``, ``ReadTimeoutError``, a connection
  closed mid-call). All with capped exponential backoff and full jitter, in up to
  ``backoff.attempts`` rounds per flush. A record Firehose ACKNOWLEDGED is never sent again by
  this sink;
- retries have ONE owner, this sink: its client must make a single attempt per call (the ingest
  handler builds it with botocore's ``total_max_attempts`` 1), or the attempts multiply
  (botocore's standard mode alone would make 4 per call, 32 for a record instead of 8). A
  persistently failing record is sent exactly ``backoff.attempts`` times per flush;
- a call that failed before its request left (no connection: ``EndpointConnectionError``,
  ``ConnectTimeoutError``) stored nothing. A call that failed AFTER (a read timeout, a connection
  closed before the answer, a 5xx) may have stored some or all of its records without the sink
  knowing: sending them again may store them twice. That is accepted, counted
  (``FirehoseNetworkErrors``, logged as "may have been stored") and harmless for readers: the
  copies carry the same ``trade_key``;
- ``flush`` returns the trades of the longest PREFIX (in add order) of records that are all
  acknowledged: the capture advances its cursor by exactly those. Trades behind the first
  unacknowledged record stay buffered (their already acknowledged records are remembered and not
  re-sent) and ``due`` is true at once, so the next loop iteration flushes again;
- if the OLDEST pending record is still refused after ``backoff.attempts`` rounds, ``flush`` raises
  ``FirehoseDeliveryError``. The ingest Lambda then fails, the execution with it, and the
  supervisor starts a new one from the checkpointed cursor: the trades behind it are received
  again from the snapshot and sent again, including those whose records Firehose had already
  accepted. Those duplicates carry the same ``trade_key``, as do Firehose's own at-least-once
  duplicates: stored at least once, read once by de-duplicating on it (README).

The client is any object with boto3's ``put_record_batch`` (tests pass fakes): this module does
not import boto3. Errors of the call are recognised by their botocore error code, HTTP status or
(network errors) botocore exception class; botocore comes with the Lambda runtime.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ConnectionError as BotocoreConnectionError
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, HTTPClientError

from tradelake.adapters.aws_errors import error_code
from tradelake.backoff import Backoff
from tradelake.model import Trade
from tradelake.pack import (
    MAX_TRADES_PER_RECORD,
    Record,
    batches,
    pack,
    pack_lines,
    written_lines,
)

log = logging.getLogger(__name__)

THROTTLING_CODES = frozenset(
    {
        "ServiceUnavailableException",
        "ThrottlingException",
        "LimitExceededException",
        "InternalFailure",
        "InternalFailureException",
    }
)
"""Error codes of a whole PutRecordBatch call that mean "try again later"."""

SERVER_ERROR_STATUS = frozenset({500, 502, 503, 504})
"""HTTP statuses of a whole call that are retried whatever the code (as botocore would)."""

NETWORK_ERRORS: tuple[type[Exception], ...] = (BotocoreConnectionError, HTTPClientError)
"""botocore's transient network errors (the classes its own retries treat as transient)."""

NOTHING_SENT: tuple[type[Exception], ...] = (EndpointConnectionError, ConnectTimeoutError)
"""Network errors raised before the request left: the records were certainly not stored."""


class FirehoseClient(Protocol):
    """The part of boto3's Firehose client the sink uses."""

    def put_record_batch(self, **kwargs: Any) -> Mapping[str, Any]: ...


class FirehoseDeliveryError(RuntimeError):
    """Firehose kept refusing a record: the capture stops, the checkpoint stays behind it."""


DELIVERY_BACKOFF = Backoff(attempts=8, base_s=0.1, cap_s=5.0)


@dataclass(slots=True)
class _Pending:
    """A record on its way: acknowledged or not, and how often it was sent."""

    record: Record
    acked: bool = False
    sends: int = 0


class FirehoseSink:
    """A ``TradeSink`` delivering to a Firehose stream; see the module docstring.

    When to flush. Every flush is a PutRecordBatch and a cursor checkpoint (an S3 PUT), and
    Firehose bills each record in 5 KB steps, so a flush should carry a full record (500
    trades): it is due once that many are buffered and the oldest is ``min_age_s`` old (in a
    burst, a flush every 5 s, not one per 500 trades), at ``max_trades``, or when the oldest is
    ``max_age_s`` old. ``max_trades`` is five records, 2,500 trades (~1 MB with their lines):
    a flush then finds them still in the CPU's cache (bench/hotpath.py's live workload: 1.23 M
    trades/s, 0.93 M at 25,000), the buffer stays small in a 128 MB function, and a crash loses
    little; above 500 trades/s it means more than one checkpoint every 5 s, at $5 a million
    PUTs. 120 s bounds what a crashed step loses from its buffer (what the next
    snapshot, 200 trades on Phemex, does not reach back to is a DECLARED gap, never a silent
    one) and keeps the trades well inside Firehose's own 300 s buffer; at BTCUSD's ~5 trades/s
    a full record comes first (docs/BENCHMARKS.md, section 2).
    ``due(now_ns)`` compares ``now_ns`` (``time.monotonic_ns``) with the ``clock`` reading taken
    when the oldest buffered trade arrived.
    """

    def __init__(
        self,
        client: FirehoseClient,
        stream_name: str,
        *,
        max_trades: int = 2_500,
        max_age_s: float = 120.0,
        min_age_s: float = 5.0,
        backoff: Backoff = DELIVERY_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if backoff.attempts < 1:
            raise ValueError("backoff.attempts must be at least 1")
        self.client, self.stream_name = client, stream_name
        self.max_trades = max_trades
        self.max_age_ns = round(max_age_s * 1e9)
        self.min_age_ns = round(min(min_age_s, max_age_s) * 1e9)
        self.backoff = backoff
        self.sleep, self.rng, self.clock = sleep, rng or random.Random(), clock
        self.records_sent = 0
        """Records Firehose acknowledged."""
        self.trades_sent = 0
        """Trades in those records."""
        self.failed_records = 0
        """Entries Firehose refused in a successful call (per-entry ``ErrorCode``)."""
        self.retries = 0
        """Records sent again after a failed entry or a call that failed as a whole."""
        self.throttles = 0
        """PutRecordBatch calls refused as a whole with a throttling or server (5xx) error."""
        self.network_errors = 0
        """PutRecordBatch calls that failed on the network (no connection, read timeout, ...)."""
        self._trades: list[Trade] = []
        """Every trade not yet returned by ``flush``, in add order."""
        self._records: list[_Pending] = []
        """Records of the first ``_packed`` trades of ``_trades``, in order."""
        self._packed = 0
        self._lines: list[bytes | int] = []
        """Per ``add`` since the last packing: its trades' JSON lines (the compiled path writes
        them with the trades), or how many trades it added, whose lines packing will write."""
        self._oldest_ns = 0
        self._last_error = "none"

    @property
    def pending(self) -> int:
        """Trades added but not yet acknowledged (returned by ``flush``)."""
        return len(self._trades)

    def counters(self) -> dict[str, int]:
        """Cumulative counters, named as the metrics they become."""
        return {
            "FirehoseRecordsSent": self.records_sent,
            "FirehoseFailedRecords": self.failed_records,
            "FirehoseRetries": self.retries,
            "FirehoseThrottles": self.throttles,
            "FirehoseNetworkErrors": self.network_errors,
        }

    def add(self, trades: Sequence[Trade], lines: bytes | None = None) -> None:
        # Once per frame: no container is kept per call (the collector would walk them all).
        if not trades:
            return
        if not self._trades:
            self._oldest_ns = self.clock()
        self._trades.extend(trades)
        self._lines.append(len(trades) if lines is None else lines)

    def due(self, now_ns: int) -> bool:
        n = len(self._trades)
        if n == 0:
            return False
        if self._records or n >= self.max_trades:  # records: left over from a partial flush
            return True
        age = now_ns - self._oldest_ns
        return age >= self.max_age_ns or (n >= MAX_TRADES_PER_RECORD and age >= self.min_age_ns)

    def flush(self) -> Sequence[Trade]:
        """Deliver what is buffered; return the acknowledged prefix (see the module docstring)."""
        if self._packed < len(self._trades):  # packed from the lines, or else from the trades
            n, lines = len(self._trades) - self._packed, self._written()
            fresh = None if lines is None else pack_lines(lines, n)
            if fresh is None:
                fresh = pack(self._trades[self._packed :])
            self._records.extend(_Pending(r) for r in fresh)
            self._packed, self._lines = len(self._trades), []
        if not self._records:
            return []
        self._deliver()
        done = 0
        for p in self._records:
            if not p.acked:
                break
            done += 1
        if done == 0:
            first = self._records[0]
            raise FirehoseDeliveryError(
                f"Firehose stream {self.stream_name!r} did not accept a record of "
                f"{first.record.trades} trades in {self.backoff.attempts} attempts "
                f"({first.sends} sends in all; last error: {self._last_error}); "
                f"{self.pending} trades are not acknowledged and stay out of the cursor"
            )
        n = sum(p.record.trades for p in self._records[:done])
        if n == len(self._trades):  # the usual case: all of it, and no copy of it
            acknowledged, self._trades = self._trades, []
        else:
            acknowledged = self._trades[:n]
            del self._trades[:n]
        del self._records[:done]
        self._packed -= n
        if self._records:
            log.warning(
                "Firehose acknowledged %d trades; %d stay buffered behind a refused record",
                n,
                self.pending,
            )
        self._oldest_ns = self.clock()
        return acknowledged

    def _written(self) -> bytes | None:
        """The lines of the trades not yet packed: as added, or written now for the adds that
        came without (a snapshot's, a reconnect's); None if some cannot be (``pack`` says why)."""
        written = [part for part in self._lines if isinstance(part, bytes)]
        if len(written) == len(self._lines):  # the usual case: every add brought its lines
            return b"".join(written)
        parts, at = [], self._packed
        for part in self._lines:
            if isinstance(part, int):
                lines = written_lines(self._trades[at : at + part])
                if lines is None:
                    return None
                at += part
            else:
                lines = part
                at += part.count(b"\n")
            parts.append(lines)
        return b"".join(parts)

    def _deliver(self) -> None:
        """Send every unacknowledged record, in rounds: at most ``backoff.attempts`` per flush.

        A round sends the refused records again (only those); a call that failed as a whole
        (throttled, 5xx, network) ends the round, its records and those it did not get to wait
        for the next one. Between rounds: backoff. Each round makes one attempt per call: the
        client's own retries must be off (module docstring).
        """
        todo = [p for p in self._records if not p.acked]
        for attempt in range(self.backoff.attempts):
            if attempt:
                self.sleep(self.backoff.delay(attempt - 1, self.rng.random))
            calls = list(batches(todo, _size))
            failed: list[_Pending] = []
            for i, call in enumerate(calls):
                refused = self._put(call)
                if refused is None:  # failed as a whole: send nothing more this round
                    failed.extend(p for later in calls[i:] for p in later)
                    break
                failed.extend(refused)
            todo = failed
            if not todo:
                return

    def _put(self, call: Sequence[_Pending]) -> list[_Pending] | None:
        """One PutRecordBatch: the refused entries, or None if the whole call is to be retried."""
        for p in call:
            if p.sends:
                self.retries += 1
            p.sends += 1
        try:
            response = self.client.put_record_batch(
                DeliveryStreamName=self.stream_name,
                Records=[{"Data": p.record.data} for p in call],
            )
        except NETWORK_ERRORS as exc:
            self.network_errors += 1
            self._last_error = f"{type(exc).__name__} for the whole call"
            if isinstance(exc, NOTHING_SENT):
                log.warning("PutRecordBatch could not be sent (%s); backing off", exc)
            else:
                log.warning(
                    "PutRecordBatch failed on the network after it was sent (%s): its %d "
                    "records may have been stored, and sending them again may store them twice "
                    "(same trade_key, readers de-duplicate); backing off",
                    exc,
                    len(call),
                )
            return None
        except Exception as exc:
            code = error_code(exc)
            if code not in THROTTLING_CODES and _status(exc) not in SERVER_ERROR_STATUS:
                raise
            self.throttles += 1
            self._last_error = f"{code} for the whole call"
            log.warning("Firehose refused PutRecordBatch as a whole (%s); backing off", code)
            return None
        entries = response.get("RequestResponses", [])
        if len(entries) != len(call):
            raise FirehoseDeliveryError(
                f"PutRecordBatch answered {len(entries)} entries for {len(call)} records"
            )
        refused: list[_Pending] = []
        for p, entry in zip(call, entries, strict=True):
            if entry.get("ErrorCode"):
                refused.append(p)
                self._last_error = f"{entry['ErrorCode']}: {entry.get('ErrorMessage', '')}"
            else:
                p.acked = True
                self.records_sent += 1
                self.trades_sent += p.record.trades
        if refused:
            self.failed_records += len(refused)
            log.warning(
                "Firehose refused %d of %d records (%s)", len(refused), len(call), self._last_error
            )
        return refused


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ``ClientError`` (or look-alike), else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        meta = response.get("ResponseMetadata")
        if isinstance(meta, Mapping):
            status = meta.get("HTTPStatusCode")
            return status if isinstance(status, int) else None
    return None


def _size(p: _Pending) -> int:
    return len(p.record.data)
