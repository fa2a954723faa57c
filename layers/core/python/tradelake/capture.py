"""The capture loop: one websocket, every symbol, until a deadline or a stop.

The same loop runs in the CLI (local sink, Ctrl-C or ``--duration``) and in the ingest Lambda
(Firehose sink, deadline from the Lambda context). It is the I/O around ``feed.Feed``, which does
the per-frame work: this module connects, pings, notices dead connections, backs off, hands
frames to the feed and sends what it asks, adds trades to the sink, flushes, and saves the
cursor. It is single-threaded on purpose: a receive with a timeout drives pings, liveness, the
feed's deadlines, buffer flushes and the status callback, so there are no locks and no ordering
questions between trades and the cursor.

Delivery: every trade taken is handed to the sink once; the cursor advances only by what the
sink acknowledges and is saved after each flush, so a crash can lose buffered trades (the next
snapshot gives them back, or a gap says they are gone) but never skip past them. A crash after a
file is published and before the cursor is saved stores its trades again on the next run: at
least once in storage, exactly once for every reader (they de-duplicate by ``trade_key``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tradelake.backoff import Backoff
from tradelake.cursor import Cursor
from tradelake.feed import CaptureStats, Feed, FeedConfig, Output
from tradelake.markets import Instrument, Products, instrument
from tradelake.ports import CursorStore, GapLedger, TradeSink

log = logging.getLogger(__name__)

MIN_WAIT_S = 0.001
"""A receive waits at least this long, so the loop always makes progress and never spins."""


class ConnectionLost(ConnectionError):
    """The websocket closed, reset or errored: reconnect."""


class SourceUnreachable(ConnectionError):
    """The first connection of a run failed and ``fail_fast`` is on: a wrong URL or no network."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach {url}: {reason}. Check the URL and your network, "
            "or try `tradelake demo` (offline) or `--url ws://127.0.0.1:PORT` with "
            "`tradelake simulate`."
        )
        self.url = url


class SubscriptionRejected(RuntimeError):
    """Phemex kept refusing every symbol: nothing is left to capture."""


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
    status_interval_s: float = 1.0
    poll_s: float = 0.2
    """Longest a receive may block: bounds how late a stop, a flush by age or a status is."""
    fail_fast: bool = True
    """What a failed FIRST connect of a run does. True: raise ``SourceUnreachable`` at once (an
    interactive caller: a mistyped URL is one clear line, not a silent wait). False: count it in
    ``stats.connect_failures`` and retry with backoff until the deadline or a stop, like any later
    reconnect (an unattended caller with a deadline: the ingest Lambda, where a network blip must
    not fail the execution). True is the default because it can never hang: without a deadline,
    False retries an unreachable URL for ever."""
    feed: FeedConfig = field(default_factory=FeedConfig)


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
        products: Products | None = None,
        recorder: Recorder | None = None,
        on_status: Callable[[CaptureStats], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        rng: random.Random | None = None,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        """``products`` is Phemex's products list (market types, scales); None: symbol shapes.

        ``wall_ns`` stamps ``recv_ns`` and anchors the window of acceptable trade times; a
        simulator passes its market clock. ``clock`` (monotonic seconds) drives every timeout.
        ``sleep`` waits out the backoff between connects (tests pass their fake clock's); None:
        a wait on the run's ``stop`` event, which a stop cuts short.
        """
        self.config = config
        self.instruments: dict[str, Instrument] = {
            s: instrument(s, products) for s in config.symbols
        }
        self.sink, self.cursor_store, self.gap_ledger = sink, cursor_store, gap_ledger
        self.connect, self.recorder, self.on_status = connect, recorder, on_status
        self.clock, self.wall_ns = clock, wall_ns
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.backoff = Backoff(base_s=config.backoff_initial_s, cap_s=config.backoff_max_s)
        self.cursor = Cursor()
        self.feed = self._new_feed()
        self._next_status = 0.0

    @property
    def stats(self) -> CaptureStats:
        return self.feed.stats

    def positions(self) -> dict[str, int]:
        """The newest exchange time taken per symbol (-1 before the first): safe to poll."""
        return self.feed.positions()

    def run(self, deadline: float | None = None, stop: threading.Event | None = None) -> Cursor:
        """Capture until ``deadline`` (a ``clock()`` value), ``stop`` is set, or Ctrl-C.

        Whatever way it ends, everything received is flushed and the cursor saved before this
        returns or raises; the returned cursor is what the next run resumes from. Symbols that
        Phemex refused for good are in ``stats.rejected``; if none is left, SubscriptionRejected.
        """
        stop = stop or threading.Event()
        self.cursor = self.cursor_store.load()
        self.feed = self._new_feed()
        try:
            self._connect_loop(deadline, stop)
        except KeyboardInterrupt:
            log.info("interrupted: flushing and saving the cursor")
        finally:
            self._flush()
        return self.cursor

    def _new_feed(self) -> Feed:
        return Feed(self.instruments, self.cursor, self.config.feed, retry_delay=self._backoff)

    def _connect_loop(self, deadline: float | None, stop: threading.Event) -> None:
        failures = 0
        while not self._over(deadline, stop):
            try:
                conn = self.connect(self.config.url, self.config.connect_timeout_s)
            except OSError as exc:
                self.stats.connect_failures += 1
                if self.stats.connections == 0 and self.config.fail_fast:
                    raise SourceUnreachable(
                        self.config.url, str(exc) or type(exc).__name__
                    ) from exc
                log.warning(
                    "connect to %s failed (%d so far): %s",
                    self.config.url,
                    self.stats.connect_failures,
                    exc,
                )
                self._status()  # an outage shows in the metrics while it lasts
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
            if self.sleep is not None:
                self.sleep(delay)
            else:
                stop.wait(delay)

    def _backoff(self, failures: int) -> float:
        return self.backoff.delay(failures, self.rng.random)

    def _over(self, deadline: float | None, stop: threading.Event) -> bool:
        return stop.is_set() or (deadline is not None and self.clock() >= deadline)

    def _session(self, conn: Connection, deadline: float | None, stop: threading.Event) -> bool:
        """One connection's life; True if it carried trade data (the backoff then resets)."""
        cfg, feed = self.config, self.feed
        messages = feed.stats.trade_messages
        now = self.clock()
        last_rx, next_ping = now, now + cfg.ping_interval_s
        try:
            for request in feed.connect(now):
                conn.send(request)
            while True:  # a turn a frame: one clock reading, one feed.due (docs/BENCHMARKS.md §6)
                now = self.clock()
                if stop.is_set() or (deadline is not None and now >= deadline):
                    break
                if feed.stats.rejected and not feed.symbols:  # cheap first: every turn
                    rejected = sorted(feed.stats.rejected.items())
                    raise SubscriptionRejected("; ".join(reason for _, reason in rejected))
                if now >= next_ping:
                    conn.send(feed.ping())
                    next_ping = now + cfg.ping_interval_s
                due = feed.due()
                if now >= due:
                    self._take(conn, feed.tick(now, self.wall_ns()))
                    due = feed.due()
                wait = min(next_ping, last_rx + cfg.dead_after_s, now + cfg.poll_s, due)
                if deadline is not None:
                    wait = min(wait, deadline)
                frame = conn.recv(max(wait - now, MIN_WAIT_S))
                if frame is None:
                    # Silence is judged only after the socket itself had nothing: a flush that
                    # took longer than dead_after_s (a throttled Firehose) left frames waiting
                    # in a healthy connection, and dropping it would lose them into a gap.
                    silent = self.clock() - last_rx
                    if silent >= cfg.dead_after_s:
                        feed.stats.dead_connections += 1
                        log.warning("no frame for %.1f s: connection is dead", silent)
                        break
                else:
                    recv_ns = self.wall_ns()
                    last_rx = self.clock()
                    if self.recorder is not None:
                        self.recorder(recv_ns, frame)
                    self._take(conn, feed.receive(frame, recv_ns, last_rx))
                if self.sink.due(time.monotonic_ns()):
                    self._flush()
                self._status()
        except ConnectionLost as exc:
            log.warning("connection lost: %s", exc)
        return feed.stats.trade_messages > messages

    def _take(self, conn: Connection, out: Output) -> None:
        """Act on what the feed produced: send its requests, declare its gaps, sink its trades."""
        for request in out.requests:
            conn.send(request)
        if out.gaps:
            self.gap_ledger.record(out.gaps)
        if out.trades:
            self.sink.add(out.trades, out.lines)

    def _flush(self) -> None:
        acknowledged = self.sink.flush()
        if not acknowledged:
            return
        written = self.cursor.advance(acknowledged)
        self.cursor_store.save(self.cursor)
        self.stats.flushes += 1
        for symbol, n in written.items():
            self.stats.symbols[symbol].written += n

    def _status(self) -> None:
        if self.on_status is None:
            return
        now = self.clock()
        if now >= self._next_status:
            self._next_status = now + self.config.status_interval_s
            self.on_status(self.stats)
