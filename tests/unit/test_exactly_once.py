"""Exactly once, end to end through the sans-I/O feed: the invariant of ARCHITECTURE.md §5.

A random tape of several symbols (one of each market type; tiny value domains, so identical
fills in one nanosecond are common) is played by a model exchange through ``Feed`` while
Hypothesis picks what goes wrong: snapshots that come late (as of the subscribe, or as of the
moment they are sent, overlapping incrementals), never, empty or unreadable; refused subscribes;
garbage frames; frames lost with a dead connection; timeouts; flushes that acknowledge a prefix
splitting a nanosecond (as Firehose acknowledges whole records); reconnects, clean restarts,
crashes that lose the buffer, and crashes between publishing a file and saving the cursor; any
snapshot size down to 1.

Whatever happens, reading the lake by ``trade_key`` (as every reader does) gives every tape trade
outside declared gaps exactly once and nothing else, and a trade is stored twice only after a
crash between publish and cursor save.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelake.cursor import Cursor
from tradelake.feed import Feed, FeedConfig, Output
from tradelake.markets import instrument
from tradelake.model import INCREMENTAL, SNAPSHOT, Fill, Gap, Trade, trade_key
from tradelake.simulator import wire
from tradelake.verify import tape_keys

EXAMPLES = int(os.environ.get("TRADELAKE_EXAMPLES", "400"))
"""``make soak`` runs thousands; the rare interleavings (a split nanosecond, then a crash, then a
snapshot starting exactly there) need them, and example tests in test_feed.py pin each one."""
SYMBOLS = ("BTCUSD", "BTCUSDT", "s1INCHUSDT")
T0 = 1_795_737_600_000_000_000  # 2026-11-27T00:00Z
ONE = 10**10
TIMEOUT_S = 1.0
CONFIG = FeedConfig(snapshot_timeout_s=TIMEOUT_S, snapshot_attempts=3, max_held_fills=40)
SNAPSHOT_FAULTS = (
    "ok",
    "ok",
    "ok",
    "late_subscribe",
    "late_send",
    "lost",
    "empty",
    "bad",
    "refuse",
)

Frames = list[list[Fill]]

# per symbol: frames of nanosecond groups of (side, price) fills
FILL_VALUES = st.tuples(st.sampled_from(["buy", "sell"]), st.sampled_from([10 * ONE, 20 * ONE]))
FRAMES = st.lists(
    st.lists(
        st.tuples(st.integers(1, 3), st.lists(FILL_VALUES, min_size=1, max_size=4)),
        min_size=1,
        max_size=3,
    ),
    min_size=1,
    max_size=12,
)


def frames_of(shape: list[list[tuple[int, list[tuple[str, int]]]]]) -> Frames:
    """Frames of fills in time order; a nanosecond never spans two frames."""
    frames, ts = [], T0
    for groups in shape:
        frame = []
        for step, values in groups:
            ts += step
            frame += [Fill(ts, side, price, ONE) for side, price in values]
        frames.append(frame)
    return frames


@dataclass
class Subscription:
    next_frame: int
    late: str | None = None
    """A snapshot still to come: the frame itself (as of the subscribe) or "send"."""


@dataclass
class Exchange:
    """Phemex as the feed sees it: replies, snapshots and incrementals on one connection.

    A trade is first ``published`` (in the store snapshots are cut from), then ``pushed`` to
    the subscriptions as an incremental; a subscription starts at the pushed position, so a
    snapshot can hold trades whose incremental is still to come.
    """

    tape: dict[str, Frames]
    snapshot_size: int
    published: dict[str, int] = field(default_factory=dict)
    pushed: dict[str, int] = field(default_factory=dict)
    queue: list[str] = field(default_factory=list)
    subs: dict[str, Subscription] = field(default_factory=dict)
    sequence: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.published = dict.fromkeys(self.tape, 0)
        self.pushed = dict.fromkeys(self.tape, 0)

    def wall_ns(self) -> int:
        """A receipt time just after the newest published trade."""
        newest = [self.tape[s][n - 1][-1].ts_ns for s, n in self.published.items() if n]
        return max(newest, default=T0) + 10**6

    def history(self, symbol: str) -> list[Fill]:
        return [f for frame in self.tape[symbol][: self.published[symbol]] for f in frame]

    def message(self, symbol: str, fills: Sequence[Fill], kind: str) -> str:
        inst = instrument(symbol)
        rows = wire.encode_rows(inst, fills)
        return wire.trades_message(inst, rows, kind, next(self.sequence))

    def snapshot(self, symbol: str) -> str:
        return self.message(symbol, self.history(symbol)[-self.snapshot_size :][::-1], SNAPSHOT)

    def new_connection(self) -> None:
        self.queue.clear()
        self.subs.clear()

    def request(self, text: str, fault: str) -> None:
        msg = orjson.loads(text)
        request_id, method, (symbol,) = msg["id"], msg["method"], msg["params"]
        if method.endswith(".unsubscribe"):
            self.subs.pop(symbol, None)
            self.queue.append(wire.reply(request_id, {"status": "success"}))
            return
        if fault == "refuse":
            self.queue.append(wire.error_reply(request_id))
            return
        sub = self.subs.get(symbol) or Subscription(self.pushed[symbol])
        self.subs[symbol] = sub
        self.queue.append(wire.reply(request_id, {"status": "success"}))
        if fault == "ok":
            self.queue.append(self.snapshot(symbol))
        elif fault == "late_subscribe":
            sub.late = self.snapshot(symbol)
        elif fault == "late_send":
            sub.late = "send"
        elif fault == "empty":
            self.queue.append(self.message(symbol, [], SNAPSHOT))
        elif fault == "bad":
            inst = instrument(symbol)
            key = inst.rows_key
            bad = [[T0, "Hold", 1, 1], "oops", [T0, "Buy", 1.5, 1]]
            self.queue.append(
                wire.dumps({"sequence": 1, "symbol": symbol, key: bad, "type": SNAPSHOT})
            )

    def release(self, symbol: str) -> None:
        sub = self.subs.get(symbol)
        if sub is not None and sub.late is not None:
            self.queue.append(self.snapshot(symbol) if sub.late == "send" else sub.late)
            sub.late = None

    def publish(self, symbol: str) -> None:
        self.published[symbol] = min(self.published[symbol] + 1, len(self.tape[symbol]))

    def push(self, symbol: str) -> None:
        self.pushed[symbol] = self.published[symbol]
        sub = self.subs.get(symbol)
        if sub is None:
            return
        fresh = self.tape[symbol][sub.next_frame : self.pushed[symbol]]
        sub.next_frame = self.pushed[symbol]
        for frame in fresh:
            self.queue.append(self.message(symbol, frame, INCREMENTAL))


@dataclass
class Lake:
    """The sink, cursor store and gap ledger, with Firehose's prefix acknowledgements."""

    buffer: list[Trade] = field(default_factory=list)
    stored: list[Trade] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    saved: dict[str, Any] = field(default_factory=lambda: Cursor().to_json())

    def flush(self, n: int) -> None:
        """Acknowledge the first ``n`` buffered trades: stored, then the cursor saved."""
        acked, self.buffer = self.buffer[:n], self.buffer[n:]
        self.stored += acked
        cursor = Cursor.from_json(self.saved)
        cursor.advance(acked)
        self.saved = cursor.to_json()

    def cursor(self) -> Cursor:
        return Cursor.from_json(self.saved)


class Run:
    """The capture loop's part, in memory: feed the feed, act on what it says."""

    def __init__(self, exchange: Exchange, lake: Lake, data: st.DataObject) -> None:
        self.exchange, self.lake, self.data = exchange, lake, data
        self.now = 0.0
        self.feed = Feed({s: instrument(s) for s in SYMBOLS}, lake.cursor(), CONFIG)

    def take(self, out: Output, *, calm: bool = False) -> None:
        self.lake.buffer += out.trades
        self.lake.gaps += out.gaps
        for request in out.requests:
            fault = "ok" if calm else self.data.draw(st.sampled_from(SNAPSHOT_FAULTS))
            self.exchange.request(request, fault)

    def connect(self, *, calm: bool = False) -> None:
        self.exchange.new_connection()
        self.take(Output(requests=self.feed.connect(self.now)), calm=calm)

    def deliver(self, *, calm: bool = False) -> None:
        frame = self.exchange.queue.pop(0)
        self.take(self.feed.receive(frame, self.exchange.wall_ns(), self.now), calm=calm)

    def tick(self) -> None:
        self.now += TIMEOUT_S + 0.01
        self.take(self.feed.tick(self.now, self.exchange.wall_ns()))


def identity(t: Trade) -> tuple[str, int, str, int, int, int]:
    return (t.symbol, t.ts_ns, t.side, t.price, t.qty, t.k)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    shapes=st.fixed_dictionaries(dict.fromkeys(SYMBOLS, FRAMES)),
    snapshot_size=st.integers(1, 12),
    data=st.data(),
)
def test_every_trade_outside_gaps_is_read_exactly_once_and_nothing_else(
    shapes: dict[str, list[list[tuple[int, list[tuple[str, int]]]]]],
    snapshot_size: int,
    data: st.DataObject,
) -> None:
    tape = {s: frames_of(shape) for s, shape in shapes.items()}
    exchange, lake = Exchange(tape, snapshot_size), Lake()
    for symbol in SYMBOLS:  # some history before the first subscribe
        for _ in range(data.draw(st.integers(0, 2), label="history")):
            exchange.publish(symbol)
        exchange.push(symbol)
    run = Run(exchange, lake, data)
    run.connect()
    crashed_after_publish = False
    actions = ("publish", "push", "deliver", "deliver", "deliver", "release", "tick", "garbage")
    for _ in range(data.draw(st.integers(0, 120), label="steps")):
        action = data.draw(st.sampled_from((*actions, "flush", "flush", "end")), label="action")
        if action == "publish":
            exchange.publish(data.draw(st.sampled_from(SYMBOLS)))
        elif action == "push":
            exchange.push(data.draw(st.sampled_from(SYMBOLS)))
        elif action == "deliver" and exchange.queue:
            run.deliver()
        elif action == "release":
            exchange.release(data.draw(st.sampled_from(SYMBOLS)))
        elif action == "tick":
            run.tick()
        elif action == "garbage":
            exchange.queue.insert(
                data.draw(st.integers(0, len(exchange.queue))), '{"sequence":1,"symbol":'
            )
        elif action == "flush":
            lake.flush(data.draw(st.integers(0, len(lake.buffer)), label="acknowledged"))
        elif action == "end":
            outcome = data.draw(
                st.sampled_from(["reconnect", "restart", "crash", "crash_after_publish"])
            )
            if outcome == "restart":
                lake.flush(len(lake.buffer))
            elif outcome == "crash":
                lake.buffer.clear()
            elif outcome == "crash_after_publish":  # files published, the cursor never saved
                lake.stored += lake.buffer
                lake.buffer.clear()
                crashed_after_publish = True
            if outcome != "reconnect":
                run = Run(exchange, lake, data)
            run.connect()

    # the end: the market closes, a clean restart catches up without any fault
    for symbol in SYMBOLS:
        while exchange.published[symbol] < len(tape[symbol]):
            exchange.publish(symbol)
        exchange.push(symbol)
    lake.flush(len(lake.buffer))
    run = Run(exchange, lake, data)
    run.connect(calm=True)
    while exchange.queue:
        run.deliver(calm=True)
    lake.flush(len(lake.buffer))

    keys = Counter(trade_key(t) for t in lake.stored)
    if not crashed_after_publish:
        assert max(keys.values(), default=1) == 1, "stored twice without a crash to explain it"
    read = {trade_key(t): t for t in lake.stored}  # what every reader sees
    for symbol in SYMBOLS:
        truth = tape_keys(symbol, [f for frame in tape[symbol] for f in frame])
        mine = {key: t for key, t in read.items() if t.symbol == symbol}
        assert set(mine) <= {key for _, key in truth}, f"{symbol}: a trade that never happened"
        assert mine, f"{symbol}: the calm catch-up took nothing"
        first = min(t.ts_ns for t in mine.values())
        gaps = [g for g in lake.gaps if g.symbol == symbol]
        for ts, key in truth:
            if ts > first and key not in mine:
                assert any(g.from_ts_ns <= ts <= g.to_ts_ns for g in gaps), f"lost {key}"
    for g in lake.gaps:
        assert g.from_ts_ns <= g.to_ts_ns
