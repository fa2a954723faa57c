"""Capture metrics as CloudWatch EMF, flushed periodically during a long ingest invocation.

Powertools Metrics print their EMF blob only when flushed, normally at the end of an invocation;
an ingest invocation lasts ~14 minutes, so a dashboard and alarms would see a 14-minute sawtooth
(ARCHITECTURE.md §6). ``CaptureMetrics`` is the capture's ``on_status`` callback (called about
once a second from the capture loop, so no thread and no lock): it samples the lag every call
and, every ``interval_s``, emits what changed since the previous emit and flushes:

- per symbol (dimensions ``service``, ``symbol``), one blob per symbol from an
  ``EphemeralMetrics`` (Powertools' non-singleton provider, so these dimensions never leak into
  the handler's own metrics): ``TradesReceived``, ``TradesWritten``, ``DuplicatesDropped``,
  ``GapDetected``, ``MalformedRows``;
- for the whole capture (dimension ``service``), through the handler's ``Metrics`` and its
  ``flush_metrics()``: ``Reconnects``, ``ConnectFailures`` (connects that failed, the first of
  a run included: the Lambda retries them until its deadline), ``DeadConnections``,
  ``MalformedFrames``, ``SymbolsRejected`` (symbols given up after Phemex refused them in a
  row), the Firehose sink's counters (``FirehoseRecordsSent``, ``FirehoseFailedRecords``,
  ``FirehoseRetries``, ``FirehoseThrottles``, ``FirehoseNetworkErrors``) and ``Lag``: receipt
  minus exchange time of the newest trade, in ms,
  one value per second with new trades (EMF carries them as an array, so CloudWatch gets real
  average, maximum and percentiles).

Counters are emitted every interval even when zero, so "no trades written for N minutes" is a
zero an alarm can watch, not missing data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from tradelake.feed import CaptureStats

_NS_PER_MS = 1_000_000


class CaptureMetrics:
    """``Capture(on_status=...)``: periodic EMF metrics from ``CaptureStats``, as deltas."""

    def __init__(
        self,
        metrics: Metrics,
        interval_s: float,
        counters: Callable[[], Mapping[str, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics, self.interval_s, self.counters, self.clock = (
            metrics,
            interval_s,
            counters,
            clock,
        )
        self.emits = 0
        self._per_symbol = EphemeralMetrics(namespace=metrics.namespace, service=metrics.service)
        self._last: dict[str, int] = {}
        self._lag_ms: list[float] = []
        self._last_received = 0
        self._next = clock() + interval_s

    def __call__(self, stats: CaptureStats) -> None:
        received = stats.received
        if received != self._last_received:
            self._last_received = received
            self._lag_ms.append(stats.last_lag_ns / _NS_PER_MS)
        if self.clock() >= self._next:
            self.emit(stats)

    def emit(self, stats: CaptureStats, *, flush: bool = True) -> None:
        """Emit what changed since the last emit (also at the very end of a run).

        The per-symbol blobs are always flushed; ``flush=False`` leaves the capture-wide metrics
        in the handler's ``Metrics`` for its ``@log_metrics`` to flush when the invocation ends.
        """
        self._next = self.clock() + self.interval_s
        self.emits += 1
        per_symbol = self._per_symbol
        for symbol, s in sorted(stats.symbols.items()):
            per_symbol.add_dimension(name="symbol", value=symbol)
            for name, value in (
                ("TradesReceived", s.received),
                ("TradesWritten", s.written),
                ("DuplicatesDropped", s.duplicates),
                ("GapDetected", s.gaps),
                ("MalformedRows", s.bad_rows),
            ):
                per_symbol.add_metric(
                    name=name, unit=MetricUnit.Count, value=self._delta(f"{symbol}/{name}", value)
                )
            per_symbol.flush_metrics()
        totals = {
            "Reconnects": stats.reconnects,
            "ConnectFailures": stats.connect_failures,
            "DeadConnections": stats.dead_connections,
            "MalformedFrames": stats.malformed_frames,
            "SymbolsRejected": len(stats.rejected),
            **(self.counters() if self.counters is not None else {}),
        }
        for name, value in totals.items():
            self.metrics.add_metric(
                name=name, unit=MetricUnit.Count, value=self._delta(name, value)
            )
        for lag in self._lag_ms:
            self.metrics.add_metric(name="Lag", unit=MetricUnit.Milliseconds, value=lag)
        self._lag_ms.clear()
        if flush:
            self.metrics.flush_metrics()

    def _delta(self, name: str, value: int) -> int:
        delta = value - self._last.get(name, 0)
        self._last[name] = value
        return delta
