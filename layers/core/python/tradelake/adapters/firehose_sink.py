"""The AWS trade sink: packed JSON-line records to Firehose with PutRecordBatch.

Delivery guarantee, and how the cursor stays honest:

- trades are buffered in the order they are added; a flush packs the new ones into records
  (``tradelake.pack``: ≤ 500 trades, ≤ 1,000 KiB) and sends every unacknowledged record in
  PutRecordBatch calls (≤ 500 records, ≤ 4 MiB);
- a partial failure (``FailedPutCount`` > 0) is retried for the failed entries ONLY, and a throttled
  call (``ServiceUnavailableException``, ``ThrottlingException``) is retried as a whole, both with
  capped exponential backoff and full jitter, in up to ``backoff.attempts`` rounds per flush.
  A record Firehose accepted is never sent again by this sink;
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
not import boto3. Errors of the call are recognised by their botocore error code.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tradelake.adapters.aws_errors import error_code
from tradelake.backoff import Backoff
from tradelake.model import Trade
from tradelake.pack import Record, batches, pack

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

    ``due(now_ns)`` compares ``now_ns`` (``time.monotonic_ns``) with the ``clock`` reading taken
    when the oldest buffered trade arrived.
    """

    def __init__(
        self,
        client: FirehoseClient,
        stream_name: str,
        *,
        max_trades: int = 25_000,
        max_age_s: float = 5.0,
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
        self.backoff = backoff
        self.sleep, self.rng, self.clock = sleep, rng or random.Random(), clock
        self.records_sent = 0
        """Records Firehose acknowledged."""
        self.trades_sent = 0
        """Trades in those records."""
        self.failed_records = 0
        """Entries Firehose refused in a successful call (per-entry ``ErrorCode``)."""
        self.retries = 0
        """Records sent again after a failed entry or a throttled call."""
        self.throttles = 0
        """PutRecordBatch calls refused as a whole with a throttling error."""
        self._trades: list[Trade] = []
        """Every trade not yet returned by ``flush``, in add order."""
        self._records: list[_Pending] = []
        """Records of the first ``_packed`` trades of ``_trades``, in order."""
        self._packed = 0
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
        }

    def add(self, trades: Sequence[Trade]) -> None:
        if trades and not self._trades:
            self._oldest_ns = self.clock()
        self._trades.extend(trades)

    def due(self, now_ns: int) -> bool:
        n = len(self._trades)
        return n > 0 and (
            bool(self._records)  # left over from a flush that could not deliver everything
            or n >= self.max_trades
            or now_ns - self._oldest_ns >= self.max_age_ns
        )

    def flush(self) -> Sequence[Trade]:
        """Deliver what is buffered; return the acknowledged prefix (see the module docstring)."""
        if self._packed < len(self._trades):
            fresh = pack(self._trades[self._packed :])
            self._records.extend(_Pending(r) for r in fresh)
            self._packed = len(self._trades)
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

    def _deliver(self) -> None:
        """Send every unacknowledged record, in rounds: at most ``backoff.attempts`` per flush.

        A round sends the refused records again (only those); a throttled call ends the round,
        the records it did not get to wait for the next one. Between rounds: backoff.
        """
        todo = [p for p in self._records if not p.acked]
        for attempt in range(self.backoff.attempts):
            if attempt:
                self.sleep(self.backoff.delay(attempt - 1, self.rng.random))
            calls = list(batches(todo, _size))
            failed: list[_Pending] = []
            for i, call in enumerate(calls):
                refused = self._put(call)
                if refused is None:  # throttled: send nothing more this round
                    failed.extend(p for later in calls[i:] for p in later)
                    break
                failed.extend(refused)
            todo = failed
            if not todo:
                return

    def _put(self, call: Sequence[_Pending]) -> list[_Pending] | None:
        """One PutRecordBatch: the refused entries, or None if the whole call was throttled."""
        for p in call:
            if p.sends:
                self.retries += 1
            p.sends += 1
        try:
            response = self.client.put_record_batch(
                DeliveryStreamName=self.stream_name,
                Records=[{"Data": p.record.data} for p in call],
            )
        except Exception as exc:
            code = error_code(exc)
            if code not in THROTTLING_CODES:
                raise
            self.throttles += 1
            self._last_error = f"{code} for the whole call"
            log.warning("Firehose throttled PutRecordBatch (%s); backing off", code)
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


def _size(p: _Pending) -> int:
    return len(p.record.data)
