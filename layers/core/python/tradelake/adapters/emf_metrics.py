"""Capture metrics as CloudWatch EMF, flushed periodically during a long ingest invocation.

Powertools Metrics print their EMF blob only when flushed, normally at the end of an invocation;
an ingest invocation lasts ~14 minutes, so a dashboard and alarms would see a 14-minute sawtooth
(ARCHITECTURE.md §6). ``CaptureMetrics`` is the capture's ``on_status`` callback (called about
once a second from the capture loop, so no thread and no lock): it samples the lag every call
and, every ``interval_s``, emits what changed since the previous emit and flushes.

A custom metric costs $0.30 a month, charged for the hours it is published in (README, "What
it costs"), so only one kind is published all the time, the one the alarms need:
``TradesWritten`` per symbol (dimensions ``service``, ``symbol``; one blob per symbol from an
``EphemeralMetrics``, Powertools' non-singleton provider, so the ``symbol`` dimension never
leaks into the handler's own metrics), every interval even when zero.

The lag (receipt minus exchange time of a trade; each call with new trades samples the largest
since the call before, ``CaptureStats.peak_lag_ns``) is no metric: every interval the handler's
logger writes one ``status`` line (JSON) with the interval's ``lag_ms_p50``, ``lag_ms_p99`` and
``lag_ms_max`` (absent when no trade came) and ``lag_samples``, which the dashboard's Logs
Insights widget charts. A line a minute (~450 bytes) is ~20 MB of logs a month, about a cent;
the metric was $0.30.

Everything else is a fault counter for the whole capture (dimension ``service``), published only
in an interval in which it is not zero (:func:`count`): ``GapDetected`` (gaps declared),
``MalformedRows``, ``Reconnects``, ``ConnectFailures`` (connects that failed, the first of a run
included: the Lambda retries them until its deadline), ``DeadConnections``, ``MalformedFrames``,
``SymbolsRejected`` (symbols given up after Phemex refused them in a row) and the Firehose sink's
``FirehoseFailedRecords``, ``FirehoseRetries``, ``FirehoseThrottles``, ``FirehoseNetworkErrors``.
Their alarms treat missing data as not breaching. Trades received and duplicates dropped are in
the invocation's log line, not metrics: every step's snapshot overlaps, so they would be
published every hour for nobody.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from tradelake.feed import CaptureStats

_NS_PER_MS = 1_000_000
FREE_ELSEWHERE = frozenset({"FirehoseRecordsSent"})
"""Sink counters not published: AWS/Firehose ``IncomingRecords`` counts the same records free."""


def lag_fields(lags_ms: Sequence[float]) -> dict[str, float]:
    """The status line's lag fields for an interval's samples (nearest-rank percentiles, to
    0.1 ms): Logs Insights charts numbers, and none at all when no trade came."""
    if not lags_ms:
        return {}
    ordered = sorted(lags_ms)

    def rank(p: float) -> float:
        return round(ordered[max(math.ceil(p * len(ordered)) - 1, 0)], 1)

    return {"lag_ms_p50": rank(0.50), "lag_ms_p99": rank(0.99), "lag_ms_max": rank(1.0)}


def count(metrics: Metrics, name: str, value: int) -> None:
    """Add a Count metric only when it is not zero: a metric not published in an hour costs
    nothing, and an alarm on a rare fault treats the missing data as not breaching."""
    if value:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


class CaptureMetrics:
    """``Capture(on_status=...)``: periodic EMF metrics from ``CaptureStats``, as deltas, and
    the lag in a ``status`` line of ``logger`` (none without one)."""

    def __init__(
        self,
        metrics: Metrics,
        interval_s: float,
        counters: Callable[[], Mapping[str, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: Logger | None = None,
    ) -> None:
        self.metrics, self.interval_s, self.counters, self.clock, self.logger = (
            metrics,
            interval_s,
            counters,
            clock,
            logger,
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
            self._lag_ms.append(stats.peak_lag_ns / _NS_PER_MS)
            stats.peak_lag_ns = 0
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
            written = self._delta(f"{symbol}/TradesWritten", s.written)
            per_symbol.add_metric(name="TradesWritten", unit=MetricUnit.Count, value=written)
            per_symbol.flush_metrics()
        counters = self.counters() if self.counters is not None else {}
        faults = {
            "GapDetected": stats.gaps,
            "MalformedRows": sum(s.bad_rows for s in stats.symbols.values()),
            "Reconnects": stats.reconnects,
            "ConnectFailures": stats.connect_failures,
            "DeadConnections": stats.dead_connections,
            "MalformedFrames": stats.malformed_frames,
            "SymbolsRejected": len(stats.rejected),
            **{k: v for k, v in counters.items() if k not in FREE_ELSEWHERE},
        }
        for name, value in faults.items():
            count(self.metrics, name, self._delta(name, value))
        if self.logger is not None:
            self.logger.info(
                "status", extra={**lag_fields(self._lag_ms), "lag_samples": len(self._lag_ms)}
            )
        self._lag_ms.clear()
        if flush and self.metrics.metric_set:  # nothing to publish: no blob, no warning
            self.metrics.flush_metrics()

    def _delta(self, name: str, value: int) -> int:
        delta = value - self._last.get(name, 0)
        self._last[name] = value
        return delta
