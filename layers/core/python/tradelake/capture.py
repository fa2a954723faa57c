"""The capture loop: one websocket, every symbol, until a deadline or a stop.

The same loop runs in the CLI (local sink, Ctrl-C or ``--duration``) and in the ingest Lambda
(Firehose sink, deadline from the Lambda context). It is single-threaded on purpose: a receive
with a timeout drives pings, liveness, buffer flushes and the status callback, so there are no
locks and no ordering questions between trades and the cursor.

Delivery: every trade received is handed to the sink once; the cursor advances only by what the
sink acknowledges and is saved after each flush, so a crash can lose buffered trades (the next
snapshot gives them back, or a gap says they are gone) but never skip past them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tradelake import protocol
from tradelake.backoff import Backoff
from tradelake.cursor import Cursor, Reconciler
from tradelake.markets import Instrument, instrument
from tradelake.model import SNAPSHOT, Gap
from tradelake.normalise import fills
from tradelake.ports import CursorStore, GapLedger, TradeSink

log = logging.getLogger(__name__)

MIN_WAIT_S = 0.001
"""A receive waits at least this long, so the loop always makes progress and never spins."""


class ConnectionLost(ConnectionError):
    """The websocket closed, reset or errored: reconnect."""


class SourceUnreachable(ConnectionError):
    """The first connection of a run failed: most likely a wrong URL or no network."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach {url}: {reason}. Check the URL and your network, "
            "or try `tradelake demo` (offline) or `--url ws://127.0.0.1:PORT` with "
            "`tradelake simulate`."
        )
        self.url = url


class SubscriptionRejected(RuntimeError):
    """Phemex keeps refusing a subscription: a configuration error, not a glitch."""


class Connection(Protocol):
    """The trade source port: a text websocket to Phemex or to the simulator."""

    def send(self, text: str) -> None: ...

    def recv(self, timeout_s: float) -> str | bytes | None:
        """The next frame, or None if none came within ``timeout_s``; ConnectionLost if closed."""
        ...

    def close(self) -> None: ...


Connect = Callable[[str, float], Connection]
"""Opens a connection to ``url`` within a timeout; raises OSError when it cannot."""

Recorder = Callable[[int, str | bytes], None]
"""Receives every raw frame with its receipt time (ns), for ``--record``."""


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """How to capture; defaults follow Phemex's advice (ping every 5 s, dead after 3 silences)."""

    url: str = "wss://ws.phemex.com"
    symbols: tuple[str, ...] = ("BTCUSD",)
    ping_interval_s: float = 5.0
    dead_after_s: float = 15.0
    connect_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_subscribe_errors: int = 5
    status_interval_s: float = 1.0
    poll_s: float = 0.2
    """Longest a receive may block: bounds how late a stop, a flush by age or a status is."""


@dataclass(slots=True)
class SymbolStats:
    received: int = 0
    written: int = 0
    duplicates: int = 0
    gaps: int = 0
    bad_rows: int = 0


@dataclass(slots=True)
class CaptureStats:
    """Counters for the status line, the summary and the metrics."""

    symbols: dict[str, SymbolStats] = field(default_factory=dict)
    frames: int = 0
    malformed_frames: int = 0
    unknown_frames: int = 0
    connections: int = 0
    reconnects: int = 0
    dead_connections: int = 0
    subscribe_errors: int = 0
    flushes: int = 0
    last_lag_ns: int = 0
    """Receipt time minus exchange time of the newest trade received."""

    @property
    def received(self) -> int:
        return sum(s.received for s in self.symbols.values())

    @property
    def written(self) -> int:
        return sum(s.written for s in self.symbols.values())

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.symbols.values())

    @property
    def gaps(self) -> int:
        return sum(s.gaps for s in self.symbols.values())


class Capture:
    """Captures ``config.symbols`` into ``sink``, resuming from and advancing the stored cursor."""

    def __init__(
        self,
        config: CaptureConfig,
        *,
        sink: TradeSink,
        cursor_store: CursorStore,
        gap_ledger: GapLedger,
        connect: Connect,
        scales: Mapping[str, tuple[int, int]] | None = None,
        recorder: Recorder | None = None,
        on_status: Callable[[CaptureStats], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.instruments: dict[str, Instrument] = {s: instrument(s, scales) for s in config.symbols}
        self.sink, self.cursor_store, self.gap_ledger = sink, cursor_store, gap_ledger
        self.connect, self.recorder, self.on_status = connect, recorder, on_status
        self.clock, self.wall_ns = clock, wall_ns
        self.rng = rng or random.Random()
        self.backoff = Backoff(base_s=config.backoff_initial_s, cap_s=config.backoff_max_s)
        self.stats = CaptureStats(symbols={s: SymbolStats() for s in config.symbols})
        self.cursor = Cursor()
        self._reconcilers: dict[str, Reconciler] = {}
        self._request_id = 0
        self._next_status = 0.0

    def positions(self) -> dict[str, int]:
        """The newest exchange time taken per symbol (-1 before the first): safe to poll."""
        return {s: r.ts_ns for s, r in self._reconcilers.items()}

    def run(self, deadline: float | None = None, stop: threading.Event | None = None) -> Cursor:
        """Capture until ``deadline`` (a ``clock()`` value), ``stop`` is set, or Ctrl-C.

        Whatever way it ends, everything received is flushed and the cursor saved before this
        returns or raises; the returned cursor is what the next run resumes from.
        """
        stop = stop or threading.Event()
        self.cursor = self.cursor_store.load()
        self._reconcilers = {
            s: Reconciler(s, self.cursor.symbols.get(s)) for s in self.config.symbols
        }
        try:
            self._connect_loop(deadline, stop)
        except KeyboardInterrupt:
            log.info("interrupted: flushing and saving the cursor")
        finally:
            self._flush()
        return self.cursor

    def _connect_loop(self, deadline: float | None, stop: threading.Event) -> None:
        failures = 0
        while not self._over(deadline, stop):
            try:
                conn = self.connect(self.config.url, self.config.connect_timeout_s)
            except OSError as exc:
                if self.stats.connections == 0:
                    raise SourceUnreachable(
                        self.config.url, str(exc) or type(exc).__name__
                    ) from exc
                log.warning("connect to %s failed: %s", self.config.url, exc)
            else:
                self.stats.connections += 1
                if self.stats.connections > 1:
                    self.stats.reconnects += 1
                try:
                    if self._session(conn, deadline, stop):
                        failures = 0
                finally:
                    conn.close()
            if self._over(deadline, stop):
                return
            delay = self._backoff(failures)
            failures += 1
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - self.clock()))
            stop.wait(delay)

    def _backoff(self, failures: int) -> float:
        return self.backoff.delay(failures, self.rng.random)

    def _over(self, deadline: float | None, stop: threading.Event) -> bool:
        return stop.is_set() or (deadline is not None and self.clock() >= deadline)

    def _next_id(self) -> int:
        self._request_id += 1
        return self._request_id

    def _session(self, conn: Connection, deadline: float | None, stop: threading.Event) -> bool:
        """One connection's life; True if it carried trade data (the backoff then resets)."""
        cfg = self.config
        pending: dict[int, str] = {}
        errors: Counter[str] = Counter()
        retry_at: dict[str, float] = {}
        got_data = False
        now = self.clock()
        last_rx, next_ping = now, now + cfg.ping_interval_s
        try:
            for symbol in cfg.symbols:
                pending[self._subscribe(conn, symbol)] = symbol
            while True:
                now = self.clock()
                if self._over(deadline, stop):
                    return got_data
                if now - last_rx >= cfg.dead_after_s:
                    self.stats.dead_connections += 1
                    log.warning("no frame for %.1f s: connection is dead", now - last_rx)
                    return got_data
                if now >= next_ping:
                    conn.send(protocol.ping(self._next_id()))
                    next_ping = now + cfg.ping_interval_s
                for symbol, at in list(retry_at.items()):
                    if now >= at:
                        del retry_at[symbol]
                        pending[self._subscribe(conn, symbol)] = symbol
                wait = min(next_ping, last_rx + cfg.dead_after_s, now + cfg.poll_s) - now
                if deadline is not None:
                    wait = min(wait, deadline - now)
                frame = conn.recv(max(wait, MIN_WAIT_S))
                if frame is not None:
                    last_rx = self.clock()
                    got_data |= self._on_frame(conn, frame, pending, errors, retry_at)
                if self.sink.due(time.monotonic_ns()):
                    self._flush()
                self._status()
        except ConnectionLost as exc:
            log.warning("connection lost: %s", exc)
            return got_data

    def _subscribe(self, conn: Connection, symbol: str) -> int:
        request_id = self._next_id()
        conn.send(protocol.subscribe(request_id, self.instruments[symbol]))
        return request_id

    def _on_frame(
        self,
        conn: Connection,
        frame: str | bytes,
        pending: dict[int, str],
        errors: Counter[str],
        retry_at: dict[str, float],
    ) -> bool:
        recv_ns = self.wall_ns()
        stats = self.stats
        stats.frames += 1
        if self.recorder is not None:
            self.recorder(recv_ns, frame)
        try:
            msg = protocol.parse(frame)
        except protocol.MalformedFrame as exc:
            stats.malformed_frames += 1
            log.warning("skipped a malformed frame (%s): %.120r", exc, frame)
            return False
        if isinstance(msg, protocol.TradesMessage):
            return self._on_trades(msg, recv_ns)
        if isinstance(msg, protocol.Reply):
            symbol = pending.pop(msg.id, None)
            if msg.error is not None:
                self._on_error(msg, symbol, errors, retry_at)
            elif symbol is not None:
                errors.pop(symbol, None)
            return False
        stats.unknown_frames += 1
        return False

    def _on_error(
        self,
        reply: protocol.Reply,
        symbol: str | None,
        errors: Counter[str],
        retry_at: dict[str, float],
    ) -> None:
        self.stats.subscribe_errors += 1
        error = reply.error or {}
        if symbol is None:
            log.warning("Phemex error for request %d: %s", reply.id, error)
            return
        method = self.instruments[symbol].subscribe_method
        text = f"Phemex rejected {method} for {symbol}: {error.get('code')} {error.get('message')}"
        errors[symbol] += 1
        if errors[symbol] >= self.config.max_subscribe_errors:
            raise SubscriptionRejected(f"{text} ({errors[symbol]} times in a row)")
        log.warning("%s; retrying", text)
        retry_at[symbol] = self.clock() + self._backoff(errors[symbol] - 1)

    def _on_trades(self, msg: protocol.TradesMessage, recv_ns: int) -> bool:
        reconciler = self._reconcilers.get(msg.symbol)
        if reconciler is None:
            self.stats.unknown_frames += 1
            return False
        rows, bad = fills(self.instruments[msg.symbol], msg.rows)
        symbol_stats = self.stats.symbols[msg.symbol]
        if bad:
            symbol_stats.bad_rows += bad
            log.warning("%s: skipped %d malformed rows in a %s", msg.symbol, bad, msg.kind)
        duplicates = reconciler.duplicates
        if msg.kind == SNAPSHOT:
            trades, gaps = reconciler.snapshot(rows, recv_ns, msg.seq)
        else:
            trades, gaps = reconciler.incremental(rows, recv_ns, msg.seq)
        symbol_stats.duplicates += reconciler.duplicates - duplicates
        if gaps:
            self._declare(gaps)
        if trades:
            symbol_stats.received += len(trades)
            self.stats.last_lag_ns = recv_ns - trades[-1].ts_ns
            self.sink.add(trades)
        return True

    def _declare(self, gaps: Sequence[Gap]) -> None:
        for gap in gaps:
            self.stats.symbols[gap.symbol].gaps += 1
            log.warning(
                "%s: trades may be missing between %d and %d ns (%s)",
                gap.symbol,
                gap.from_ts_ns,
                gap.to_ts_ns,
                gap.reason,
            )
        self.gap_ledger.record(gaps)

    def _flush(self) -> None:
        acknowledged = self.sink.flush()
        if not acknowledged:
            return
        self.cursor.advance(acknowledged)
        self.cursor_store.save(self.cursor)
        self.stats.flushes += 1
        for symbol, n in Counter(t.symbol for t in acknowledged).items():
            self.stats.symbols[symbol].written += n

    def _status(self) -> None:
        if self.on_status is None:
            return
        now = self.clock()
        if now >= self._next_status:
            self._next_status = now + self.config.status_interval_s
            self.on_status(self.stats)
