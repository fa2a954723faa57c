"""`tradelake capture` against an INDEPENDENT Phemex-protocol server, with faults, run after run.

The bundled simulator (``tradelake.simulator``) is our own reading of the protocol, so a
misreading shared by it and the capture would pass every test that uses it. The server here is
written again from the protocol as Phemex documents it (one websocket; ``server.ping``;
``trade.subscribe`` for inverse and spot symbols, ``trade_p.subscribe`` for USDT perpetuals;
6001 refusals; a snapshot of the last 200 trades newest first, then incrementals oldest first)
and imports nothing from the simulator. Where the documentation is silent it deliberately
chooses differently from the bundled one:

- the market runs in real time at the wall clock and is generated as it goes (no tape, no
  compression): its own generator, with bursts, taker sweeps, identical fills and identical
  fills interleaved with others in one nanosecond; perpetual timestamps come in 100 ns grains
  and 1INCH's in microseconds, as rounded feeds do;
- each connection has a reader task and a publisher task (ours: one coroutine alternating), so
  replies, snapshots and incrementals interleave as they happen, and an incremental of a new
  subscription may overtake its snapshot or its ack;
- each subscription publishes on its own jittered clock (25-60 ms), and ``sequence`` counts per
  symbol, across connections;
- a snapshot lists the fills of one nanosecond in an arbitrary order (newest first holds between
  nanoseconds, not within one), and a snapshot cut at another moment than the incremental stream
  overlaps the incrementals on either side;
- perpetual decimal strings are not always canonical (``"60000.10"``, ``"1.0"``);
- a subscribe of a symbol the connection already follows restarts it (fresh snapshot, stream
  from now); an unsubscribe of a symbol it does not follow is a success; ``[]`` unsubscribes
  the whole channel;
- websocket-level pings every 2 s, also while the application is stalled.

Faults come from a seeded RNG: per subscribe a deck of outcomes (refused 6001, snapshot before
the ack (and the ack up to 120 ms later, after incrementals), late snapshot as of the subscribe
or as of when it is sent, lost snapshot, a second snapshot, normal), so a refusal never comes
more than twice in a row; now and then an empty incremental; per connection a drop without
close frame or a clean close after 1.5-4.5 s; on every third connection a 2-4 s stall, a lost
first snapshot and a life longer than the capture's 5 s wait for a snapshot; garbage frames of
every kind in rotation. ``calm_in`` stops every fault for the end of the test so the capture can
catch up; ``end_market_in`` ends the trading so that "caught up" is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import pytest
import websocket
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.lake_files import read_gaps
from tradelake.cli import main
from tradelake.model import BUY, SELL, Fill, Gap
from tradelake.verify import check, tape_keys

pytestmark = pytest.mark.integration

SYMBOLS: Final = ("BTCUSD", "BTCUSDT", "sBTCUSDT", "s1INCHUSDT")
SEED: Final = 20261127
FIXED: Final = 10**10
"""tradelake's fixed point: prices and quantities in units of 10^-10."""
SNAPSHOT_SIZE: Final = 200

WireRow = list[Any]

# The market


@dataclass(frozen=True, slots=True)
class Spec:
    """How a symbol trades and goes on the wire; tick and lot in fixed point."""

    market: str
    """``inverse`` (priceEp = price * 10^4, whole contracts), ``spot`` (priceEp and quantity
    * 10^8) or ``perpetual`` (decimal strings under ``trades_p``)."""
    tick: int
    lot: int
    start_ticks: int
    median_lots: float
    max_lots: int
    grain_ns: int
    """Every timestamp is a multiple of it."""


SPECS: Final[Mapping[str, Spec]] = {
    "BTCUSD": Spec("inverse", 5 * 10**9, FIXED, 120_000, 40.0, 20_000, 1),  # 0.5 USD, 1 contract
    "BTCUSDT": Spec("perpetual", 10**9, 10**7, 600_000, 25.0, 100_000, 100),  # 0.1, 0.001
    "sBTCUSDT": Spec("spot", 10**8, 10**4, 6_000_000, 3_000.0, 10**7, 1),  # 0.01, 0.000001
    "s1INCHUSDT": Spec("spot", 10**6, 10**9, 4_000, 2_000.0, 10**6, 1_000),  # 0.0001, 0.1
}
NORMAL_EVENTS_PER_S: Final = 100.0
BURST_EVENTS_PER_S: Final = 1_500.0


def decimal_text(value: int, rng: random.Random) -> str:
    """A fixed-point value as a decimal string, canonical or (1 in 4) with trailing zeros."""
    whole, frac = divmod(value, FIXED)
    text = str(whole) if frac == 0 else f"{whole}.{frac:010d}".rstrip("0")
    if rng.random() < 0.25:
        text += "0" * rng.randint(1, 2) if "." in text else ".0"
    return text


@dataclass(slots=True)
class Book:
    """One symbol's market: every fill so far (the ground truth) and its wire row."""

    symbol: str
    spec: Spec
    rng: random.Random
    next_ts: int
    ticks: int
    sequence: int
    fills: list[Fill] = field(default_factory=list)
    rows: list[WireRow] = field(default_factory=list)
    burst_left: int = 0

    def encode(self, fill: Fill, rng: random.Random) -> WireRow:
        side = "Buy" if fill.side == BUY else "Sell"
        if self.spec.market == "perpetual":
            price, qty = decimal_text(fill.price, rng), decimal_text(fill.qty, rng)
            return [fill.ts_ns, side, price, qty]
        if self.spec.market == "inverse":
            return [fill.ts_ns, side, fill.price // 10**6, fill.qty // FIXED]
        return [fill.ts_ns, side, fill.price // 100, fill.qty // 100]

    def one(self, ts: int, side: str, ticks: int, rng: random.Random | None = None) -> Fill:
        """A fill at ``ticks`` with a log-normal size: mostly small, now and then a whale."""
        lots = round((rng or self.rng).lognormvariate(0.0, 1.4) * self.spec.median_lots)
        lots = min(self.spec.max_lots, max(1, lots))
        return Fill(ts, side, max(1, ticks) * self.spec.tick, lots * self.spec.lot)

    def event(self) -> None:
        """Everything that trades at ``next_ts``: one to six fills in ONE nanosecond."""
        rng, ts = self.rng, self.next_ts
        side = BUY if rng.random() < 0.5 else SELL
        kind = rng.random()
        if kind < 0.70:
            fills = [self.one(ts, side, self.ticks)]
        elif kind < 0.82:  # a taker sweep: several price levels at once
            step = 1 if side == BUY else -1
            fills = [self.one(ts, side, self.ticks + step * i) for i in range(rng.randint(2, 5))]
            self.ticks += step * (len(fills) - 1)
        elif kind < 0.92:  # fully identical fills
            fills = [self.one(ts, side, self.ticks)] * rng.randint(2, 4)
        else:  # identical fills interleaved with others: A B A B A ...
            a, b = self.one(ts, side, self.ticks), self.one(ts, side, self.ticks + 1)
            fills = [a, b, a] + [rng.choice((a, b)) for _ in range(rng.randint(0, 3))]
        self.ticks = max(1, self.ticks + rng.choice((-1, 0, 0, 1)))
        self.fills += fills
        self.rows += [self.encode(f, rng) for f in fills]

    def schedule(self) -> None:
        """The next event: Poisson arrivals, now and then a burst of them."""
        rng = self.rng
        if self.burst_left:
            self.burst_left -= 1
        elif rng.random() < 0.012:
            self.burst_left = rng.randint(15, 60)
        rate = BURST_EVENTS_PER_S if self.burst_left else NORMAL_EVENTS_PER_S
        ts = self.next_ts + int(rng.expovariate(rate) * 1e9) + 1
        grain = self.spec.grain_ns
        self.next_ts = -(-ts // grain) * grain  # a later grain: never the same nanosecond


class Market:
    """Every symbol trading in real time: fills are timestamped on the wall clock as they happen.

    Generated lazily, up to "now", whenever the server looks (``advance``); all fills of one
    nanosecond are generated together, so no batch can split a nanosecond.
    """

    def __init__(self, symbols: Sequence[str], seed: int) -> None:
        self._wall0, self._mono0 = time.time_ns(), time.monotonic_ns()
        self.end_ns: int | None = None
        now = self.now_ns()
        self.books: dict[str, Book] = {}
        for symbol in symbols:
            rng = random.Random(f"{seed}:market:{symbol}")
            spec = SPECS[symbol]
            first = now + int(rng.expovariate(NORMAL_EVENTS_PER_S) * 1e9) + 1
            self.books[symbol] = Book(
                symbol,
                spec,
                rng,
                next_ts=-(-first // spec.grain_ns) * spec.grain_ns,
                ticks=spec.start_ticks,
                sequence=rng.randrange(10**8, 10**10),
            )

    def now_ns(self) -> int:
        """Wall-clock nanoseconds that never go backwards (monotonic since the start)."""
        return self._wall0 + time.monotonic_ns() - self._mono0

    def advance(self) -> None:
        now = self.now_ns()
        if self.end_ns is not None:
            now = min(now, self.end_ns)
        for book in self.books.values():
            while book.next_ts <= now:
                book.event()
                book.schedule()


# The server

OUTCOMES: Final = (
    "refuse",
    "before_ack",
    "before_ack",
    "late_as_of_subscribe",
    "late_as_of_send",
    "lost",
    "twice",
    *["normal"] * 6,
)
"""The deck each subscribe draws from (reshuffled when empty): a refusal at most twice in a row."""
GARBAGE_KINDS: Final = (
    "not_json",
    "binary",
    "truncated",
    "bad_envelope",
    "unreadable_rows",
    "wrong_key",
)
TICK_S: Final = 0.005
LATE_AT_MOST_S: Final = 1.0
"""A late snapshot goes out after its incrementals, or this long after its subscribe."""


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    pings: int = 0
    subscribes: int = 0
    """Subscribes answered with success."""
    resubscribes: int = 0
    """... of a symbol the connection already followed."""
    unsubscribes: int = 0
    invalid: int = 0
    """Refusals of requests that were wrong (not injected)."""
    refusals: int = 0
    snapshots: int = 0
    before_ack: int = 0
    late: Counter[str] = field(default_factory=Counter)
    """Late snapshots sent, by content: ``as_of_subscribe`` or ``as_of_send``; ``again``: a
    second snapshot for one subscribe."""
    empty_incrementals: int = 0
    late_cancelled: int = 0
    lost: int = 0
    incrementals: int = 0
    drops: int = 0
    closes: int = 0
    stalls: int = 0
    garbage: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class LateSnapshot:
    incrementals: int
    """Incrementals of the symbol to send before it."""
    rows: list[WireRow] | None
    """As of the subscribe; None: as of when it is sent."""
    since: float
    kind: str


@dataclass(slots=True)
class Subscription:
    sent: int
    """Index into the book of the next fill to publish."""
    next_push: float
    late: LateSnapshot | None = None


@dataclass(slots=True)
class Session:
    ws: ServerConnection
    number: int
    rng: random.Random
    end_kind: str
    end_at: float
    stall_at: float
    stall_s: float
    next_garbage: float
    running: asyncio.Event
    forced: list[str]
    """Outcomes for the next subscribes, before the deck's."""
    subs: dict[str, Subscription] = field(default_factory=dict)
    later: list[asyncio.Task[None]] = field(default_factory=list)
    """Replies sent with a delay."""
    last_frame: str | None = None


def channel(symbol: str) -> str:
    return "trade_p" if SPECS[symbol].market == "perpetual" else "trade"


def dumps(message: Mapping[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def success(request_id: Any, result: Any) -> str:
    return dumps({"error": None, "id": request_id, "result": result})


def refusal(request_id: Any) -> str:
    return dumps(
        {"error": {"code": 6001, "message": "invalid argument"}, "id": request_id, "result": None}
    )


class IndependentPhemex:
    """The exchange on 127.0.0.1 (a free port), in a background thread; a context manager.

    It shuts itself down after ``lifetime_s`` whatever happens. Counters (``stats``), the ground
    truth (``truth``) and ``failures`` (exceptions in the server) are for after the ``with``.
    """

    def __init__(self, symbols: Sequence[str], *, seed: int, faults: bool, lifetime_s: float):
        self.market = Market(symbols, seed)
        self.stats = ServerStats()
        self.failures: list[str] = []
        self.faults = faults
        self.lifetime_s = lifetime_s
        self.calm_at = float("inf")
        self.port = 0
        self._rng = random.Random(f"{seed}:server")
        self._seed = seed
        self._deck: list[str] = []
        self._stopping = False
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="independent-phemex", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def calm_in(self, seconds: float) -> None:
        """No fault at all from ``seconds`` from now: stalls end, late snapshots go out."""
        self.calm_at = time.monotonic() + seconds

    def end_market_in(self, seconds: float) -> None:
        """No trade after ``seconds`` from now."""
        self.market.end_ns = self.market.now_ns() + round(seconds * 1e9)

    def truth(self) -> dict[str, list[Fill]]:
        return {symbol: list(book.fills) for symbol, book in self.market.books.items()}

    def __enter__(self) -> IndependentPhemex:
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError(f"the server did not start: {self.failures}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended by itself meanwhile
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(15)
        if self._thread.is_alive():
            self.failures.append("the server thread did not stop within 15 s")

    # The server thread

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.failures.append(f"server: {exc!r}")
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._connection,
            "127.0.0.1",
            0,
            ping_interval=2.0,
            ping_timeout=None,
            close_timeout=0.5,
        ) as server:
            self.port = int(next(iter(server.sockets)).getsockname()[1])
            self._ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.lifetime_s)
            self._stopping = True
            self.market.advance()  # the truth up to now (or the end of the market)

    def _faults_on(self, now: float) -> bool:
        return self.faults and now < self.calm_at and not self._stopping

    def _draw(self, session: Session, now: float) -> str:
        if not self._faults_on(now):
            return "normal"
        if session.forced:
            return session.forced.pop()
        if not self._deck:
            self._deck = list(OUTCOMES)
            self._rng.shuffle(self._deck)
        return self._deck.pop()

    async def _connection(self, ws: ServerConnection) -> None:
        self.stats.connections += 1
        number = self.stats.connections
        rng = random.Random(f"{self._seed}:connection:{number}")
        now = asyncio.get_running_loop().time()
        end_at = now + rng.uniform(1.5, 4.5)
        stall_at, stall_s = float("inf"), rng.uniform(2.0, 4.0)
        forced: list[str] = []
        if number % 3 == 2:
            # A stall, then at least a second of service; and a first snapshot lost on a
            # connection that outlives the capture's 5 s wait for it, so that it asks again.
            stall_at = rng.uniform(now + 0.3, end_at)
            end_at = max(end_at, stall_at + stall_s + rng.uniform(1.0, 2.0), now + 7.5)
            forced.append("lost")
        session = Session(
            ws,
            number,
            rng,
            end_kind="drop" if number % 2 else "close",
            end_at=end_at,
            stall_at=stall_at,
            stall_s=stall_s,
            next_garbage=now + rng.expovariate(2.0),
            running=asyncio.Event(),
            forced=forced,
        )
        session.running.set()
        tasks = [
            asyncio.create_task(self._guard(self._read(session))),
            asyncio.create_task(self._guard(self._publish(session))),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in [*tasks, *session.later]:
                task.cancel()
            await asyncio.gather(*tasks, *session.later, return_exceptions=True)
            for sub in session.subs.values():
                self.stats.late_cancelled += sub.late is not None

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        """Run one task of a connection; a closed connection ends it, anything else is a bug."""
        try:
            await work
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except Exception as exc:
            self.failures.append(f"connection task: {exc!r}")

    async def _send(self, session: Session, frame: str | bytes) -> None:
        await session.ws.send(frame)

    # Requests

    async def _read(self, session: Session) -> None:
        async for request in session.ws:
            await session.running.wait()  # a stalled server reads nothing
            if self._stopping:
                return
            await self._request(session, request)

    async def _request(self, session: Session, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self.stats.invalid += 1
            await self._send(session, refusal(None))
            return
        request_id, method, params = message.get("id"), message.get("method"), message.get("params")
        if method == "server.ping":
            self.stats.pings += 1
            await self._send(session, success(request_id, "pong"))
            return
        prefix, _, verb = str(method).rpartition(".")
        if verb == "unsubscribe" and prefix in ("trade", "trade_p") and params == []:
            for followed in [s for s in session.subs if channel(s) == prefix]:
                self._end_subscription(session, followed)
            await self._send(session, success(request_id, {"status": "success"}))
            return
        symbol = params[0] if isinstance(params, list) and len(params) == 1 else None
        if verb not in ("subscribe", "unsubscribe") or not isinstance(symbol, str):
            symbol = ""
        if symbol not in self.market.books:
            self.stats.invalid += 1
            await self._send(session, refusal(request_id))
            return
        if channel(symbol) != prefix:  # trade_p for a spot symbol, trade for a perpetual, ...
            self.stats.invalid += 1
            await self._send(session, refusal(request_id))
            return
        if verb == "unsubscribe":
            self.stats.unsubscribes += 1
            self._end_subscription(session, symbol)
            await self._send(session, success(request_id, {"status": "success"}))
            return
        await self._subscribe(session, request_id, symbol)

    def _end_subscription(self, session: Session, symbol: str) -> None:
        sub = session.subs.pop(symbol, None)
        if sub is not None and sub.late is not None:
            self.stats.late_cancelled += 1

    async def _subscribe(self, session: Session, request_id: Any, symbol: str) -> None:
        loop = asyncio.get_running_loop()
        now, rng = loop.time(), session.rng
        outcome = self._draw(session, now)
        if outcome == "refuse":
            self.stats.refusals += 1
            await self._send(session, refusal(request_id))
            return
        if symbol in session.subs:
            self.stats.resubscribes += 1
            self._end_subscription(session, symbol)
        self.stats.subscribes += 1
        self.market.advance()
        book = self.market.books[symbol]
        upto = len(book.rows)
        sub = Subscription(upto, now + rng.uniform(0.025, 0.06))
        session.subs[symbol] = sub
        rows = self._snapshot_rows(book, upto, rng)
        ack = success(request_id, {"status": "success"})
        if outcome == "before_ack":  # the ack even comes after the first incrementals, at times
            self.stats.before_ack += 1
            await self._send_snapshot(session, book, rows)
            reply = self._send_later(session, rng.uniform(0.0, 0.12), ack)
            session.later.append(asyncio.create_task(self._guard(reply)))
            return
        if outcome.startswith("late"):
            kind = outcome.removeprefix("late_")
            as_of_subscribe = rows if kind == "as_of_subscribe" else None
            sub.late = LateSnapshot(rng.randint(1, 3), as_of_subscribe, now, kind)
        elif outcome == "lost":
            self.stats.lost += 1
        elif outcome == "twice":  # and once more, as of a little later
            sub.late = LateSnapshot(rng.randint(1, 2), None, now, "again")
        await self._send(session, ack)
        if outcome in ("normal", "twice"):
            await self._send_snapshot(session, book, rows)

    async def _send_later(self, session: Session, delay_s: float, frame: str) -> None:
        await asyncio.sleep(delay_s)
        await session.running.wait()
        if not self._stopping:
            await self._send(session, frame)

    def _snapshot_rows(self, book: Book, upto: int, rng: random.Random) -> list[WireRow]:
        """The last 200 fills before ``upto``, newest first, each nanosecond's in any order."""
        groups: list[list[WireRow]] = []
        for row in book.rows[max(0, upto - SNAPSHOT_SIZE) : upto]:
            if groups and groups[-1][0][0] == row[0]:
                groups[-1].append(row)
            else:
                groups.append([row])
        out: list[WireRow] = []
        for group in reversed(groups):
            rng.shuffle(group)
            out += group
        return out

    def _message(self, book: Book, rows: list[WireRow], kind: str) -> str:
        book.sequence += 1
        key = "trades_p" if book.spec.market == "perpetual" else "trades"
        return dumps({"symbol": book.symbol, "sequence": book.sequence, "type": kind, key: rows})

    async def _send_snapshot(self, session: Session, book: Book, rows: list[WireRow]) -> None:
        self.stats.snapshots += 1
        frame = self._message(book, rows, "snapshot")
        session.last_frame = frame
        await self._send(session, frame)

    # Publishing and faults

    async def _publish(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            await asyncio.sleep(TICK_S)
            now = loop.time()
            faults_on = self._faults_on(now)
            if faults_on and now >= session.end_at:
                await self._end_connection(session)
                return
            if faults_on and now >= session.stall_at:
                session.stall_at = float("inf")
                await self._stall(session)
                continue
            if faults_on and now >= session.next_garbage:
                session.next_garbage = now + session.rng.expovariate(2.0)
                await self._send(session, self._garbage(session))
            self.market.advance()
            for symbol, sub in list(session.subs.items()):
                await self._publish_symbol(session, symbol, sub, now, faults_on)

    async def _publish_symbol(
        self, session: Session, symbol: str, sub: Subscription, now: float, faults_on: bool
    ) -> None:
        book = self.market.books[symbol]
        if session.subs.get(symbol) is not sub:
            return  # unsubscribed meanwhile
        if now >= sub.next_push:
            sub.next_push = now + session.rng.uniform(0.025, 0.06)
            if faults_on and session.rng.random() < 0.02:  # nothing new, says the exchange
                self.stats.empty_incrementals += 1
                await self._send(session, self._message(book, [], "incremental"))
                if session.subs.get(symbol) is not sub:
                    return
            upto = len(book.rows)
            if upto > sub.sent:
                rows, sub.sent = book.rows[sub.sent : upto], upto
                self.stats.incrementals += 1
                if sub.late is not None:
                    sub.late.incrementals -= 1
                frame = self._message(book, rows, "incremental")
                session.last_frame = frame
                await self._send(session, frame)
        late = sub.late
        if session.subs.get(symbol) is not sub or late is None:
            return
        if late.incrementals <= 0 or not faults_on or now - late.since > LATE_AT_MOST_S:
            sub.late = None
            self.stats.late[late.kind] += 1
            snapshot = late.rows
            if snapshot is None:
                self.market.advance()
                snapshot = self._snapshot_rows(book, len(book.rows), session.rng)
            await self._send_snapshot(session, book, snapshot)

    async def _end_connection(self, session: Session) -> None:
        if session.end_kind == "drop":
            self.stats.drops += 1
            session.ws.transport.abort()  # no close frame: the socket just dies
        else:
            self.stats.closes += 1
            await session.ws.close(session.rng.choice((1000, 1001)), "bye")

    async def _stall(self, session: Session) -> None:
        """Neither read nor send (the websocket layer still pings), then go on where it was."""
        self.stats.stalls += 1
        loop = asyncio.get_running_loop()
        end = loop.time() + session.stall_s
        session.running.clear()
        transport = session.ws.transport
        transport.pause_reading()
        try:
            while loop.time() < end and self._faults_on(loop.time()):
                await asyncio.sleep(0.02)
        finally:
            transport.resume_reading()
            session.running.set()

    def _garbage(self, session: Session) -> str | bytes:
        """One broken frame; none of them carries a trade a careful reader could take."""
        rng = session.rng
        kind = GARBAGE_KINDS[sum(self.stats.garbage.values()) % len(GARBAGE_KINDS)]
        self.stats.garbage[kind] += 1
        book = self.market.books[rng.choice(sorted(session.subs) or list(self.market.books))]
        fake = book.one(self.market.now_ns(), BUY, book.ticks + 7, rng)  # it never happened
        row = book.encode(fake, rng)
        key = "trades_p" if book.spec.market == "perpetual" else "trades"
        if kind == "not_json":
            return rng.choice(("{", "}{", "trade", '{"id":1,', "[1,2", "null]", "{'a': 1}"))
        if kind == "binary":
            return b"\xff" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        if kind == "truncated":
            text = session.last_frame or self._message(book, [row], "incremental")
            return text[: rng.randrange(1, len(text))]
        seq = book.sequence
        if kind == "bad_envelope":
            return dumps(
                rng.choice(
                    (
                        {"symbol": book.symbol, "sequence": seq, "type": "update", key: [row]},
                        {"symbol": None, "sequence": seq, "type": "incremental", key: [row]},
                        {"symbol": book.symbol, "sequence": seq, "type": "incremental", key: {}},
                        {
                            "symbol": book.symbol,
                            "sequence": str(seq),
                            "type": "incremental",
                            key: [row],
                        },
                        {
                            "symbol": book.symbol,
                            "sequence": 2**64,
                            "type": "incremental",
                            key: [row],
                        },
                        {
                            "symbol": book.symbol,
                            "sequence": seq,
                            "type": "incremental",
                            "trades": [row],
                            "trades_p": [row],
                        },
                    )
                )
            )
        if kind == "wrong_key":
            if key == "trades":  # decimal strings where scaled integers belong
                wrong, other = "trades_p", [row[0], row[1], str(row[2]), str(row[3])]
            else:  # scaled integers where decimal strings belong
                wrong, other = "trades", [row[0], row[1], fake.price // 10**6, fake.qty // 10**7]
            return dumps(
                {"symbol": book.symbol, "sequence": seq, "type": "incremental", wrong: [other]}
            )
        rows = [rng.choice(broken_rows(row, book.spec)) for _ in range(rng.randint(1, 4))]
        kind_of = "snapshot" if rng.random() < 0.3 else "incremental"
        return dumps({"symbol": book.symbol, "sequence": seq, "type": kind_of, key: rows})


def broken_rows(row: WireRow, spec: Spec) -> list[Any]:
    """Unreadable variants of a good row: short, bad side, bad time, bad numbers, not a row."""
    ts, side, price, qty = row
    common: list[Any] = [
        [ts, side, price],
        [ts, "BUY", price, qty],
        [ts, "Hold", price, qty],
        [str(ts), side, price, qty],
        [ts // 10**6, side, price, qty],  # milliseconds
        [ts + 3_600 * 10**9, side, price, qty],  # an hour ahead of the clock
        [None, side, price, qty],
        "oops",
        None,
        {"ts": ts},
    ]
    if spec.market == "perpetual":
        return [
            *common,
            [ts, side, float(price), qty],
            [ts, side, "1e5", qty],
            [ts, side, price, "-1"],
            [ts, side, "0", qty],
            [ts, side, price, "0.00000000001"],
            [ts, side, " " + price, qty],
        ]
    return [
        *common,
        [ts, side, price + 0.5, qty],
        [ts, side, -price, qty],
        [ts, side, price, 0],
        [ts, side, str(price), qty],
    ]


# The test


@contextlib.contextmanager
def independent_phemex(*, faults: bool, lifetime_s: float) -> Iterator[IndependentPhemex]:
    server = IndependentPhemex(SYMBOLS, seed=SEED, faults=faults, lifetime_s=lifetime_s)
    with server:
        yield server
    assert not server.failures, server.failures


def lake_rows(lake: Path, view: str = "trades") -> dict[str, list[tuple[int, str]]]:
    """``(ts_ns, trade_key)`` by symbol: ``trades`` is what readers get, ``trades_stored`` all."""
    rows: dict[str, list[tuple[int, str]]] = {}
    con = connect(lake)
    for symbol, ts_ns, key in con.sql(f"SELECT symbol, ts_ns, trade_key FROM {view}").fetchall():
        rows.setdefault(symbol, []).append((ts_ns, key))
    return rows


def recorded(paths: Sequence[Path]) -> list[tuple[str, int, str]]:
    """(file, receipt ns, frame) of every frame the capture recorded, in order."""
    out: list[tuple[str, int, str]] = []
    for path in paths:
        if path.exists():
            with gzip.open(path, "rt") as lines:
                out += [(path.name, r["recv_ns"], r["frame"]) for r in map(json.loads, lines)]
    return out


def explain(
    symbol: str,
    fills: Sequence[Fill],
    rows: Sequence[tuple[int, str]],
    gaps: Sequence[Gap],
    frames: Sequence[tuple[str, int, str]],
) -> str:
    """What went wrong for ``symbol``: the trade keys, the gaps and the frames around them."""
    have = Counter(key for _, key in rows)
    truth = tape_keys(symbol, fills)
    known = {key for _, key in truth}
    first, last = min(ts for ts, _ in rows), max(ts for ts, _ in rows)
    mine = sorted((g for g in gaps if g.symbol == symbol), key=lambda g: g.from_ts_ns)
    missing = [
        (ts, key)
        for ts, key in truth
        if first < ts <= last
        and key not in have
        and not any(g.from_ts_ns <= ts <= g.to_ts_ns for g in mine)
    ]
    lines = [f"{symbol}: lake {first}..{last}, {len(rows)} rows"]
    lines += [f"  missing outside gaps: {key}" for _, key in missing[:10]]
    lines += [f"  extra: {key}" for key in have if key not in known][:10]
    lines += [f"  stored twice: {key} x{n}" for key, n in have.items() if n > 1][:10]
    lines += [f"  gap {g.from_ts_ns}..{g.to_ts_ns} {g.reason}" for g in mine]
    tag = f'"symbol":"{symbol}"'
    ours = [f for f in frames if tag in f[2] or '"id"' in f[2]]  # its trades and every reply
    for ts, _ in missing[:2]:
        hits = [i for i, (_, _, frame) in enumerate(ours) if str(ts) in frame]
        around = sorted({j for i in hits for j in range(i - 3, i + 4) if 0 <= j < len(ours)})
        lines.append(f"  frames (run, receipt ns, text) around {ts}:")
        for j in around:
            name, recv_ns, frame = ours[j]
            at = max(0, frame.find(str(ts)))
            lines.append(
                f"    {name} {recv_ns} {frame[:120]} ... {frame[max(0, at - 150) : at + 250]}"
            )
    return "\n".join(lines)


def capture(server: IndependentPhemex, lake: Path, seconds: float, record: Path) -> int:
    argv = ["capture", "--url", server.url, "--symbols", ",".join(SYMBOLS), "--lake", str(lake)]
    return main([*argv, "--duration", str(seconds), "--record", str(record)])


RUN_1_S: Final = 22.0
RUN_2_S: Final = 12.0
CALM_AFTER_S: Final = 3.0
"""Into the second run: faults stop, so anything a fault left pending resolves (a lost
snapshot takes the capture's 5 s snapshot timeout, a refusal its retry, a drop its backoff)."""
MARKET_END_AFTER_S: Final = 7.0


def test_capture_loses_nothing_outside_gaps_and_reads_nothing_twice_run_after_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = tmp_path / "lake"
    records = [tmp_path / "run1.jsonl.gz", tmp_path / "run2.jsonl.gz"]
    with independent_phemex(faults=True, lifetime_s=RUN_1_S + RUN_2_S + 30) as server:
        assert capture(server, lake, RUN_1_S, records[0]) == 0, capsys.readouterr().err
        server.calm_in(CALM_AFTER_S)
        server.end_market_in(MARKET_END_AFTER_S)
        assert capture(server, lake, RUN_2_S, records[1]) == 0, capsys.readouterr().err
    err = capsys.readouterr().err

    stats = server.stats
    injected = {
        "refusals": stats.refusals,
        "snapshots before the ack": stats.before_ack,
        "late snapshots as of the subscribe": stats.late["as_of_subscribe"],
        "late snapshots as of when sent": stats.late["as_of_send"],
        "lost snapshots": stats.lost,
        "second snapshots": stats.late["again"],
        "empty incrementals": stats.empty_incrementals,
        "drops": stats.drops,
        "closes": stats.closes,
        "stalls": stats.stalls,
        **{f"garbage {kind}": stats.garbage[kind] for kind in GARBAGE_KINDS},
    }
    assert min(injected.values()) > 0, (injected, stats)
    assert stats.unsubscribes > 0, "the capture asked again for a snapshot that never came"

    truth = server.truth()
    rows = lake_rows(lake)
    gaps = read_gaps(lake)
    frames: list[tuple[str, int, str]] | None = None
    for result in check(truth, rows, gaps):
        symbol, fills = result.symbol, truth[result.symbol]
        if not result.complete:
            frames = frames if frames is not None else recorded(records)
            pytest.fail(f"{result}\n{explain(symbol, fills, rows[symbol], gaps, frames)}\n{err}")
        assert result.in_lake > 1000, result
        assert max(ts for ts, _ in rows[symbol]) == fills[-1].ts_ns, (
            f"{symbol}: the capture did not catch up with the end of the market"
        )
        assert any(key.endswith(":1") for _, key in rows[symbol]), "identical fills, k = 1"
    stored = lake_rows(lake, "trades_stored")
    for result in check(truth, stored, gaps):  # no crash happened: nothing may be stored twice
        if result.duplicates:
            frames = frames if frames is not None else recorded(records)
            symbol = result.symbol
            pytest.fail(f"{result}\n{explain(symbol, truth[symbol], stored[symbol], gaps, frames)}")
    print(f"faults injected: {injected}\nserver: {stats}")  # shown with -rP
    print(f"gaps: {Counter(g.reason for g in gaps)}")
    print("\n".join(map(str, check(truth, rows, gaps))))
    print(err)


def test_the_independent_server_speaks_the_documented_protocol() -> None:
    """Without faults: the contract the capture test relies on, checked with a plain client."""
    with independent_phemex(faults=False, lifetime_s=30) as server:
        ws = websocket.create_connection(server.url, timeout=5)
        try:
            ws.send('{"id":1,"method":"server.ping","params":[]}')
            assert json.loads(ws.recv()) == {"error": None, "id": 1, "result": "pong"}
            ws.send('{"id":2,"method":"trade_p.subscribe","params":["BTCUSD"]}')
            assert json.loads(ws.recv())["error"] == {"code": 6001, "message": "invalid argument"}
            time.sleep(1.5)  # the market trades before anyone subscribes
            ws.send('{"id":3,"method":"trade.subscribe","params":["BTCUSD"]}')
            frames = [json.loads(ws.recv()) for _ in range(2)]
            assert frames[0] == {"error": None, "id": 3, "result": {"status": "success"}}
            snapshot = frames[1]
            assert snapshot["type"] == "snapshot"
            assert len(snapshot["trades"]) == SNAPSHOT_SIZE  # the market opened before
            stamps = [row[0] for row in snapshot["trades"]]
            assert stamps == sorted(stamps, reverse=True)
            incrementals: list[list[Any]] = []
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                assert msg["type"] == "incremental"
                incrementals += msg["trades"]
            ws.send('{"id":4,"method":"trade.unsubscribe","params":["BTCUSD"]}')
            while (msg := json.loads(ws.recv())).get("id") != 4:
                incrementals += msg["trades"]
            assert msg == {"error": None, "id": 4, "result": {"status": "success"}}
            ws.settimeout(0.3)
            with pytest.raises(websocket.WebSocketTimeoutException):
                ws.recv()  # nothing after the unsubscribe
            ws.settimeout(5)
            for request_id in (5, 6):  # a second subscribe on the connection: a fresh snapshot
                ws.send(f'{{"id":{request_id},"method":"trade_p.subscribe","params":["BTCUSDT"]}}')
                while (msg := json.loads(ws.recv())).get("id") != request_id:
                    pass
                assert msg["result"] == {"status": "success"}
                msg = json.loads(ws.recv())
                assert msg["type"] == "snapshot"
                assert len(msg["trades_p"]) == SNAPSHOT_SIZE
                assert all(isinstance(v, str) for row in msg["trades_p"] for v in row[2:])
        finally:
            ws.close()
    fills = server.truth()["BTCUSD"]
    sent = [(f.ts_ns, f.side, f.price // 10**6, f.qty // FIXED) for f in fills]
    got = [(r[0], r[1].lower(), r[2], r[3]) for r in snapshot["trades"] + incrementals]
    end = sum(1 for f in fills if f.ts_ns <= max(ts for ts, *_ in got))
    assert sorted(got) == sorted(sent[end - len(got) : end]), "contiguous, no overlap, no hole"
    assert len(incrementals) > 100, "a real-time market of ~200 trades a second"
