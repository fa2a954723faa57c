"""A Phemex-protocol exchange on 127.0.0.1: a real websocket server that serves a tape.

Market time runs at ``start_ns + wall_elapsed * compression``; a trade is published once market
time reaches its ``ts_ns``. A subscribe gets an ack and a snapshot of the last ``snapshot_size``
published trades (newest first); then, every ``batch_interval``, one incremental per subscribed
symbol with exactly the trades published since (oldest first). Each batch is cut at a market
time, so the incrementals continue the snapshot with no overlap and no hole, and the fills of
one nanosecond always travel in one frame: the capture's reconciliation relies on both.

A subscribe of a symbol the connection already follows (without unsubscribing first) gets a
fresh ack and snapshot too, but the stream goes on where it was: that snapshot ends where the
next incremental begins, and no incremental is skipped or repeated. After an unsubscribe, a
subscribe starts afresh, as the first one did.

Faults (``Faults``, all off by default) are drawn per connection from a seeded RNG, so a failing
run can be replayed. Each connection is served by ONE coroutine that alternates between reading
requests and publishing batches, so without snapshot faults a snapshot can never be overtaken
by an incremental. With them, a snapshot may come late (after the first incrementals of its
symbol, as real feeds sometimes do), never, or empty or unreadable.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import socket
import struct
import threading
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from tradelake.markets import Instrument, instrument
from tradelake.model import INCREMENTAL, SNAPSHOT, Fill
from tradelake.simulator import wire

log = logging.getLogger(__name__)

ODD_MESSAGE_RATE = 0.05
"""With ``unknown_keys``: chance per batch tick of a well-formed message of an unknown shape."""
CLOSE_TIMEOUT_S = 1.0
NEVER = math.inf


@dataclass(frozen=True, slots=True)
class Faults:
    """Which failures to inject. Intervals are wall seconds, means of exponential waits.

    - ``drop_every``: kill the TCP connection without a close frame (FIN or RST, at random);
    - ``storm_every`` / ``storm_seconds``: a drop storm, for the whole server (an exchange's
      gateway failing over): for ``storm_seconds`` every connection, old or new, is killed like
      a drop at its first batch tick, so the capture reconnects again and again into a wall;
    - ``close_every``: clean close, close frame with code 1000;
    - ``stall_every`` / ``stall_seconds``: the server neither reads nor sends (not even pongs
      or websocket pongs) for ``stall_seconds``, then resumes where it left off, unless the
      client has given up by then;
    - ``malformed_rate``: chance per batch tick of an EXTRA garbage frame (real frames intact);
    - ``error_rate``: chance that a subscribe is refused with error 6001;
    - ``unknown_keys``: extra ``dts``/``mts`` keys on trade messages, and now and then a message
      of unknown shape;
    - ``lost_snapshot_rate``: chance that a subscribe is acked with success but its snapshot is
      never sent (the incrementals flow all the same);
    - ``bad_snapshot_rate``: chance that the snapshot is sent with no valid trade: either empty
      or with every row unreadable (``wire.unreadable``);
    - ``late_snapshot_rate``: chance that the snapshot is held back until 1–3 incrementals of its
      symbol have been sent, so they arrive BEFORE it. Its contents are, at random, as of the
      subscribe (the incrementals continue right after its newest row) or as of the moment it
      is sent (it overlaps the incrementals already sent). An unsubscribe or another subscribe
      of the symbol cancels a held-back snapshot that is not yet sent; when the faults stop, or
      the tape has no trade left to send first, it is sent at the next batch tick.

    The three snapshot faults are drawn in that order (lost, bad, late), at most one per
    subscribe, and only for a subscribe that the ``error_rate`` draw let through.

    Faults stop for good once market time reaches ``until_event_ns`` or ``Simulator.calm()`` is
    called, so a test can let the capture catch up at the end.
    """

    drop_every: float | None = None
    storm_every: float | None = None
    storm_seconds: float = 2.0
    close_every: float | None = None
    stall_every: float | None = None
    stall_seconds: float = 20.0
    malformed_rate: float = 0.0
    error_rate: float = 0.0
    unknown_keys: bool = False
    late_snapshot_rate: float = 0.0
    lost_snapshot_rate: float = 0.0
    bad_snapshot_rate: float = 0.0
    until_event_ns: int | None = None
    seed: int = 0

    @classmethod
    def chaos(cls, seed: int = 0) -> Faults:
        """Every fault at a rate a healthy capture (ping 5 s, dead after 15 s) survives."""
        return cls(
            drop_every=60.0,
            close_every=90.0,
            stall_every=120.0,
            stall_seconds=20.0,
            malformed_rate=0.01,
            error_rate=0.1,
            unknown_keys=True,
            late_snapshot_rate=0.1,
            lost_snapshot_rate=0.05,
            bad_snapshot_rate=0.05,
            seed=seed,
        )


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """How to serve the tape; the protocol defaults are Phemex's (200-trade snapshots, ~20 ms)."""

    snapshot_size: int = 200
    compression: float = 1.0
    """Event seconds per wall second: 360 plays an hour of market in ten seconds."""
    faults: Faults = field(default_factory=Faults)
    batch_interval: float = 0.02
    port: int = 0
    """0 picks a free port; see ``Simulator.url``."""
    start_ns: int | None = None
    """Market time at start; default: the tape's first trade."""
    host: str = "127.0.0.1"


@dataclass(slots=True)
class SimulatorStats:
    """Counters of what was served and of every fault injected (written by the server thread)."""

    connections: int = 0
    subscribes: int = 0
    """Successful subscribes, each answered with a snapshot (unless a snapshot fault struck)."""
    incrementals: int = 0
    trades_sent: int = 0
    rejected: int = 0
    """Error replies to bad requests (unknown symbol or method), not injected."""
    drops: int = 0
    """Connections killed without a close frame, storm drops included."""
    storms: int = 0
    storm_drops: int = 0
    """Drops by a storm (also in ``drops``)."""
    closes: int = 0
    stalls: int = 0
    malformed: int = 0
    errors: int = 0
    unknown: int = 0
    """Messages of unknown shape sent (``unknown_keys``)."""
    late_snapshots: int = 0
    """Snapshots held back behind incrementals (counted at the subscribe, even if cancelled)."""
    lost_snapshots: int = 0
    bad_snapshots: int = 0
    """Snapshots sent empty or with every row unreadable."""


@dataclass(frozen=True, slots=True)
class _Book:
    """One symbol of the tape, ready to serve: times for bisecting, rows already encoded."""

    instrument: Instrument
    ts: list[int]
    rows: list[wire.WireRow]


@dataclass(slots=True)
class _LateSnapshot:
    """A snapshot held back (``late_snapshot_rate``) until ``incrementals`` more were sent."""

    incrementals: int
    upto: int | None
    """As of the subscribe: the tape index after its newest row; None: as of when it is sent."""


@dataclass(slots=True)
class _Session:
    """One client connection: its subscriptions (next tape index to send) and fault clock."""

    ws: ServerConnection
    rng: random.Random
    next_index: dict[str, int] = field(default_factory=dict)
    late: dict[str, _LateSnapshot] = field(default_factory=dict)
    """Held-back snapshots by symbol, of subscribed symbols only."""
    drop_at: float = NEVER
    close_at: float = NEVER
    stall_at: float = NEVER
    last_frame: str | None = None


class Simulator:
    """The exchange, served from a background thread with its own event loop."""

    def __init__(
        self, tape: Mapping[str, Sequence[Fill]], config: SimulatorConfig | None = None
    ) -> None:
        self.config = config or SimulatorConfig()
        if self.config.snapshot_size < 0 or self.config.compression <= 0:
            raise ValueError("snapshot_size must be >= 0 and compression > 0")
        if not tape:
            raise ValueError("the tape has no symbols")
        self._books = {symbol: _book(symbol, fills) for symbol, fills in tape.items()}
        firsts = [b.ts[0] for b in self._books.values() if b.ts]
        start_ns = self.config.start_ns
        self.start_ns = start_ns if start_ns is not None else min(firsts, default=time.time_ns())
        self.last_ns = max(self.last_trades().values(), default=self.start_ns)
        self.stats = SimulatorStats()
        self._sequence = itertools.count(1)
        self._calm = False
        self._storm_rng = random.Random(f"{self.config.faults.seed}:storms")
        self._next_storm = NEVER
        self._storm_end = -NEVER
        self._t0: int | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._failure: BaseException | None = None

    # Control, from any thread

    def start(self) -> Simulator:
        """Listen and start the market clock; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="tradelake-simulator", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> None:
        """Close every connection (code 1001) and the listener; idempotent."""
        thread, loop, stop = self._thread, self._loop, self._stop
        self._stopping = True
        if thread is None or loop is None or stop is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(stop.set)
            thread.join()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def calm(self) -> None:
        """Stop injecting faults, for good (a running stall ends too)."""
        self._calm = True

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    @property
    def symbols(self) -> list[str]:
        return list(self._books)

    def event_ns(self) -> int:
        """Current market time: trades up to and including it are published."""
        if self._t0 is None:
            return self.start_ns
        return self.start_ns + int((time.monotonic_ns() - self._t0) * self.config.compression)

    @property
    def finished(self) -> bool:
        """Every trade of the tape is published (batches follow within ``batch_interval``)."""
        return self.event_ns() >= self.last_ns

    def last_trades(self) -> dict[str, int]:
        """The ``ts_ns`` of each symbol's last trade: a capture that holds these has caught up."""
        return {symbol: book.ts[-1] for symbol, book in self._books.items() if book.ts}

    def published(self, symbol: str) -> int:
        """How many of ``symbol``'s trades are published now."""
        return bisect_right(self._books[symbol].ts, self.event_ns())

    # The server thread

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:  # surfaces in start() or in the log, never silently
            if ready.is_set():
                log.exception("the simulator stopped on an error")
            self._failure = exc
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with ws_serve(
            self._connection,
            self.config.host,
            self.config.port,
            ping_interval=None,  # Phemex relies on the app-level server.ping
            compression=None,
            close_timeout=CLOSE_TIMEOUT_S,
        ) as server:
            self._port = int(next(iter(server.sockets)).getsockname()[1])
            self._t0 = time.monotonic_ns()
            self._next_storm = self._loop.time() + self._wait(
                self._storm_rng, self.config.faults.storm_every
            )
            ready.set()
            await self._stop.wait()

    def _faults_on(self) -> bool:
        until = self.config.faults.until_event_ns
        return not self._calm and (until is None or self.event_ns() < until)

    def _wait(self, rng: random.Random, mean_s: float | None) -> float:
        return NEVER if mean_s is None else rng.expovariate(1.0 / mean_s)

    async def _connection(self, ws: ServerConnection) -> None:
        self.stats.connections += 1
        faults = self.config.faults
        session = _Session(ws, random.Random(f"{faults.seed}:{self.stats.connections}"))
        loop = asyncio.get_running_loop()
        now = loop.time()
        session.drop_at = now + self._wait(session.rng, faults.drop_every)
        session.close_at = now + self._wait(session.rng, faults.close_every)
        session.stall_at = now + self._wait(session.rng, faults.stall_every)
        interval = self.config.batch_interval
        next_tick = now + interval
        with contextlib.suppress(ConnectionClosed):
            while not self._stopping:
                now = loop.time()
                if now >= next_tick:
                    if not await self._tick(session, now):
                        return
                    next_tick = max(next_tick + interval, loop.time())
                    continue
                try:
                    async with asyncio.timeout(next_tick - now):
                        request = await ws.recv()
                except TimeoutError:
                    continue
                await self._answer(session, request)

    async def _tick(self, session: _Session, now: float) -> bool:
        """Inject what is due, then publish; False once a fault has ended the connection."""
        faults_on = self._faults_on()
        if faults_on:
            faults, rng = self.config.faults, session.rng
            storm = self._storming(now)
            if storm or now >= session.drop_at:
                self.stats.drops += 1
                self.stats.storm_drops += int(storm)
                _abort(session.ws, reset=rng.random() < 0.5)
                return False
            if now >= session.close_at:
                self.stats.closes += 1
                await session.ws.close(1000, "simulated close")
                return False
            if now >= session.stall_at:
                await self._stall(session, faults.stall_seconds)
                session.stall_at = asyncio.get_running_loop().time() + self._wait(
                    rng, faults.stall_every
                )
            if faults.malformed_rate and rng.random() < faults.malformed_rate:
                self.stats.malformed += 1
                book = self._books[rng.choice(sorted(session.next_index or self._books))]
                await session.ws.send(
                    wire.garbage(
                        rng,
                        book.instrument,
                        next(self._sequence),
                        self.event_ns(),
                        session.last_frame,
                    )
                )
            if faults.unknown_keys and rng.random() < ODD_MESSAGE_RATE:
                self.stats.unknown += 1
                symbol = rng.choice(sorted(self._books))
                await session.ws.send(wire.odd_message(rng, symbol, self.event_ns()))
        event_ns = self.event_ns()
        for symbol, sent in list(session.next_index.items()):
            book = self._books[symbol]
            upto = bisect_right(book.ts, event_ns)
            late = session.late.get(symbol)
            if upto > sent:
                session.next_index[symbol] = upto
                self.stats.incrementals += 1
                await self._send_trades(session, book, book.rows[sent:upto], INCREMENTAL)
                if late is not None:
                    late.incrementals -= 1
            if late is not None and (
                late.incrementals <= 0 or not faults_on or upto >= len(book.ts)
            ):
                del session.late[symbol]
                snapshot_upto = session.next_index[symbol] if late.upto is None else late.upto
                await self._send_trades(
                    session, book, self._snapshot_rows(book, snapshot_upto), SNAPSHOT
                )
        return True

    def _storming(self, now: float) -> bool:
        """Whether a drop storm is on at loop time ``now``; starts the next one when due."""
        if now >= self._next_storm:
            self.stats.storms += 1
            self._storm_end = now + self.config.faults.storm_seconds
            self._next_storm = self._storm_end + self._wait(
                self._storm_rng, self.config.faults.storm_every
            )
        return now < self._storm_end

    async def _stall(self, session: _Session, seconds: float) -> None:
        """Go silent: not reading means no replies, no pongs and no reaction to a close."""
        self.stats.stalls += 1
        loop = asyncio.get_running_loop()
        transport = session.ws.transport
        transport.pause_reading()
        end = loop.time() + seconds
        try:
            while loop.time() < end and self._faults_on() and not self._stopping:
                await asyncio.sleep(min(0.05, end - loop.time()))
        finally:
            transport.resume_reading()

    def _snapshot_rows(self, book: _Book, upto: int) -> list[wire.WireRow]:
        """The last ``snapshot_size`` trades before tape index ``upto``, newest first."""
        return book.rows[max(0, upto - self.config.snapshot_size) : upto][::-1]

    async def _send_trades(
        self,
        session: _Session,
        book: _Book,
        rows: list[wire.WireRow],
        kind: str,
        *,
        readable: bool = True,
    ) -> None:
        extra = None
        if self.config.faults.unknown_keys and self._faults_on():
            ms = self.event_ns() // 1_000_000
            extra = {"dts": ms, "mts": ms}
        frame = wire.trades_message(book.instrument, rows, kind, next(self._sequence), extra)
        session.last_frame = frame
        if readable:
            self.stats.trades_sent += len(rows)
        await session.ws.send(frame)

    async def _answer(self, session: _Session, request: str | bytes) -> None:
        try:
            message = orjson.loads(request)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict):
            self.stats.rejected += 1
            await session.ws.send(wire.error_reply(None))
            return
        request_id, method, params = message.get("id"), message.get("method"), message.get("params")
        if method == "server.ping":
            await session.ws.send(wire.reply(request_id, "pong"))
        elif method in ("trade.subscribe", "trade_p.subscribe"):
            await self._subscribe(session, request_id, method, params)
        elif method in ("trade.unsubscribe", "trade_p.unsubscribe"):
            await self._unsubscribe(session, request_id, method, params)
        else:
            self.stats.rejected += 1
            await session.ws.send(wire.error_reply(request_id))

    def _book_for(self, method: str, params: Any) -> _Book | None:
        """The book a one-symbol request names, if it exists and the method fits its market."""
        if not (isinstance(params, list) and len(params) == 1 and isinstance(params[0], str)):
            return None
        book = self._books.get(params[0])
        if book is None or method not in _methods(book.instrument):
            return None
        return book

    async def _subscribe(
        self, session: _Session, request_id: Any, method: str, params: Any
    ) -> None:
        """Ack and snapshot, or a fault; a symbol already subscribed keeps its place in the tape.

        Only a symbol not yet subscribed starts at "now": for one already subscribed, the
        snapshot ends where the next incremental will begin, so that re-subscribing (say, after a
        snapshot that never came) neither skips nor repeats a trade of the incrementals.
        """
        book = self._book_for(method, params)
        if book is None:
            self.stats.rejected += 1
            await session.ws.send(wire.error_reply(request_id))
            return
        faults, rng = self.config.faults, session.rng
        faults_on = self._faults_on()
        if faults_on and rng.random() < faults.error_rate:
            self.stats.errors += 1
            await session.ws.send(wire.error_reply(request_id))
            return
        symbol = book.instrument.symbol
        upto = session.next_index.get(symbol)
        if upto is None:
            upto = session.next_index[symbol] = bisect_right(book.ts, self.event_ns())
        session.late.pop(symbol, None)  # superseded by this subscribe's own snapshot
        self.stats.subscribes += 1
        await session.ws.send(wire.reply(request_id, {"status": "success"}))
        rows = self._snapshot_rows(book, upto)
        if faults_on and faults.lost_snapshot_rate and rng.random() < faults.lost_snapshot_rate:
            self.stats.lost_snapshots += 1
        elif faults_on and faults.bad_snapshot_rate and rng.random() < faults.bad_snapshot_rate:
            self.stats.bad_snapshots += 1
            bad = [] if rng.random() < 0.5 else wire.unreadable(rng, rows)
            await self._send_trades(session, book, bad, SNAPSHOT, readable=False)
        elif faults_on and faults.late_snapshot_rate and rng.random() < faults.late_snapshot_rate:
            self.stats.late_snapshots += 1
            incrementals = rng.randint(1, 3)
            session.late[symbol] = _LateSnapshot(incrementals, upto if rng.random() < 0.5 else None)
        else:
            await self._send_trades(session, book, rows, SNAPSHOT)

    async def _unsubscribe(
        self, session: _Session, request_id: Any, method: str, params: Any
    ) -> None:
        """``[symbol]`` ends one subscription, ``[]`` every one of the method's channel."""
        if params == []:
            for symbol in list(session.next_index):
                if method in _methods(self._books[symbol].instrument):
                    del session.next_index[symbol]
                    session.late.pop(symbol, None)
        else:
            book = self._book_for(method, params)
            if book is None:
                self.stats.rejected += 1
                await session.ws.send(wire.error_reply(request_id))
                return
            session.next_index.pop(book.instrument.symbol, None)
            session.late.pop(book.instrument.symbol, None)
        await session.ws.send(wire.reply(request_id, {"status": "success"}))


def _methods(inst: Instrument) -> tuple[str, str]:
    return inst.subscribe_method, inst.unsubscribe_method


def _book(symbol: str, fills: Sequence[Fill]) -> _Book:
    inst = instrument(symbol)
    ts = [f.ts_ns for f in fills]
    if any(a > b for a, b in itertools.pairwise(ts)):
        raise ValueError(f"{symbol}: the tape must be in ascending ts_ns")
    return _Book(inst, ts, wire.encode_rows(inst, fills))


def _abort(ws: ServerConnection, *, reset: bool) -> None:
    """Kill the TCP connection with no close frame: a FIN, or with ``reset`` an RST."""
    transport = ws.transport
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def serve(
    tape: Mapping[str, Sequence[Fill]],
    config: SimulatorConfig | None = None,
    on_ready: Callable[[Simulator], None] | None = None,
) -> SimulatorStats:
    """Run a simulator in the foreground until Ctrl-C; returns its counters."""
    with Simulator(tape, config) as sim, contextlib.suppress(KeyboardInterrupt):
        if on_ready is not None:
            on_ready(sim)
        while True:
            time.sleep(3600)
    return sim.stats
