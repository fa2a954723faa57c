"""The simulator as a capture sees it: real websocket clients against the real server.

Every trade frame is checked against the tape: a snapshot is exactly the last N published
trades newest first, each incremental continues exactly where the previous frame ended, and a
frame always ends on a nanosecond boundary. With snapshot faults, incrementals may come before
the snapshot (or without one), and what arrived must still be one run of the tape with no hole.
"""

from __future__ import annotations

import itertools
import os
import signal
import struct
import subprocess
import sys
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
import websocket
from websocket import ABNF, create_connection

from tradelake import protocol
from tradelake.markets import Market, instrument
from tradelake.model import INCREMENTAL, SNAPSHOT, Fill, format_fixed
from tradelake.normalise import fills
from tradelake.simulator import Faults, Simulator, SimulatorConfig, serve, synthetic_tape
from tradelake.simulator.cli import DEFAULT_SYMBOLS

pytestmark = pytest.mark.integration

START = 1_700_000_000 * 10**9
HOUR = 3600 * 10**9
MARKETS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")
TAPE = synthetic_tape(MARKETS, START, 2 * HOUR, seed=5)
FAST = 360.0
"""An hour of market in ten seconds: ~1000 trades a second per symbol."""


def simulator(faults: Faults | None = None, **overrides: Any) -> Simulator:
    config = SimulatorConfig(compression=FAST, start_ns=START + HOUR, faults=faults or Faults())
    return Simulator(TAPE, SimulatorConfig(**{**_fields(config), **overrides}))


def _fields(config: SimulatorConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


class Follower:
    """One symbol's stream, checked frame by frame against the tape.

    With ``early`` (snapshot faults on), incrementals may come before the snapshot or without
    one: the first frame places the stream in the tape. Either way, the trades received so far
    must be ONE run of the tape, ``[first, next)``, and the next incremental starts at ``next``.
    """

    def __init__(
        self, symbol: str, tape: list[Fill], snapshot_size: int, *, early: bool = False
    ) -> None:
        self.instrument = instrument(symbol)
        self.tape, self.ts = tape, [f.ts_ns for f in tape]
        self.snapshot_size = snapshot_size
        self.early = early
        self.first: int | None = None
        self.next: int | None = None
        self.frames: list[tuple[str, int, int]] = []
        """(kind, start, end): the slice of the tape each trade frame carried, in arrival order."""
        self.snapshots = self.incrementals = 0

    def on_snapshot(self, rows: list[Any]) -> None:
        raw_ts = [r[0] for r in rows]
        assert raw_ts == sorted(raw_ts, reverse=True), "a snapshot is newest first"
        got = self._fills(rows[::-1])
        assert got, "an empty snapshot is a bad one (Feed.bad_snapshots)"
        end = bisect_right(self.ts, got[-1].ts_ns)
        assert len(got) == min(self.snapshot_size, end), "the last N published trades"
        assert self.tape[end - len(got) : end] == got
        self._received(SNAPSHOT, end - len(got), end)
        self.snapshots += 1

    def on_incremental(self, rows: list[Any]) -> None:
        raw_ts = [r[0] for r in rows]
        assert raw_ts == sorted(raw_ts), "an incremental is oldest first"
        got = self._fills(rows)
        assert got, "empty incrementals are not sent"
        if self.next is None:
            assert self.early, "an incremental before the snapshot"
            start = bisect_left(self.ts, got[0].ts_ns)
        else:
            start = self.next
        end = start + len(got)
        assert self.tape[start:end] == got, "overlap or hole"
        assert end == len(self.tape) or self.ts[end] > got[-1].ts_ns, "split ns"
        self._received(INCREMENTAL, start, end)
        self.incrementals += 1

    def _received(self, kind: str, start: int, end: int) -> None:
        if self.first is None or self.next is None:
            self.first, self.next = start, end
        else:
            assert start <= self.next, "a hole between what came before and this frame"
            assert end >= self.first, "a hole between this snapshot and what came before"
            self.first, self.next = min(self.first, start), max(self.next, end)
        self.frames.append((kind, start, end))

    def _fills(self, rows: list[Any]) -> list[Fill]:
        got, bad = fills(self.instrument, rows)
        assert bad == 0
        for row, fill in zip(rows, got, strict=True):
            assert row == wire_row(self.instrument.market, fill), "encoding"
        return got


def wire_row(market: Market, f: Fill) -> list[Any]:
    """The Phemex row for a fill, worked out from decimal strings (independent of the server)."""
    side = {"buy": "Buy", "sell": "Sell"}[f.side]
    price, qty = Decimal(format_fixed(f.price)), Decimal(format_fixed(f.qty))
    if market is Market.PERPETUAL:
        return [f.ts_ns, side, format_fixed(f.price), format_fixed(f.qty)]
    if market is Market.SPOT:
        return [f.ts_ns, side, int(price * 10**8), int(qty * 10**8)]
    return [f.ts_ns, side, int(price * 10**4), int(qty)]


class Feed:
    """A client connection that sorts every frame: replies, checked trades, garbage, oddities."""

    def __init__(self, sim: Simulator, tape: dict[str, list[Fill]] = TAPE) -> None:
        self.sim, self.tape = sim, tape
        self.ws = create_connection(sim.url, timeout=2)
        self.followers: dict[str, Follower] = {}
        self.replies: dict[int, protocol.Reply] = {}
        self.garbage: list[str] = []
        """Frames the capture's parser refuses."""
        self.bad_rows: list[str] = []
        """Incrementals with rows of which none is readable."""
        self.bad_snapshots: list[str] = []
        """Snapshots without a readable row, empty ones included."""
        self.reply_at: dict[int, int] = {}
        """By request id: how many trade frames had arrived before its reply."""
        self.odd: list[str] = []
        self.trade_frames: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self._id = 0

    def send(self, method: str, *params: Any) -> int:
        self._id += 1
        self.ws.send(orjson.dumps({"id": self._id, "method": method, "params": params}).decode())
        return self._id

    def subscribe(self, symbol: str) -> int:
        size, faults = self.sim.config.snapshot_size, self.sim.config.faults
        early = bool(
            faults.late_snapshot_rate or faults.lost_snapshot_rate or faults.bad_snapshot_rate
        )
        self.followers.setdefault(symbol, Follower(symbol, self.tape[symbol], size, early=early))
        return self.send(instrument(symbol).subscribe_method, symbol)

    def unsubscribe(self, symbol: str) -> int:
        return self.send(instrument(symbol).unsubscribe_method, symbol)

    def reply(self, request_id: int, timeout: float = 2.0) -> protocol.Reply:
        deadline = time.monotonic() + timeout
        while request_id not in self.replies:
            assert time.monotonic() < deadline, f"no reply to request {request_id}"
            self.pump(0.05)
        return self.replies.pop(request_id)

    def frames(self, seconds: float) -> Iterator[tuple[int, bytes]]:
        """(opcode, payload) of every frame, control frames too, for ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.ws.settimeout(left)
            try:
                opcode, frame = self.ws.recv_data_frame(control_frame=True)
            except websocket.WebSocketTimeoutException:
                return
            self.arrivals.append(time.monotonic())
            yield opcode, frame.data
            if opcode == ABNF.OPCODE_CLOSE:
                return

    def pump(self, seconds: float) -> None:
        for opcode, data in self.frames(seconds):
            if opcode == ABNF.OPCODE_TEXT:
                self.dispatch(data.decode())

    def dispatch(self, frame: str) -> None:
        try:
            msg = protocol.parse(frame)
        except protocol.MalformedFrame:
            self.garbage.append(frame)
            return
        if msg is None:
            self.odd.append(frame)
        elif isinstance(msg, protocol.Reply):
            self.replies[msg.id] = msg
            self.reply_at[msg.id] = len(self.trade_frames)
        elif msg.kind == SNAPSHOT and fills(instrument(msg.symbol), msg.rows)[0] == []:
            self.bad_snapshots.append(frame)
        elif msg.rows and fills(instrument(msg.symbol), msg.rows)[0] == []:
            self.bad_rows.append(frame)
        else:
            self.trade_frames.append(orjson.loads(frame))
            follower = self.followers[msg.symbol]
            if msg.kind == SNAPSHOT:
                follower.on_snapshot(msg.rows)
            else:
                follower.on_incremental(msg.rows)

    def close(self) -> None:
        self.ws.close(timeout=0.2)


def test_three_markets_snapshot_then_exact_continuation() -> None:
    with simulator() as sim:
        feed = Feed(sim)
        ids = {symbol: feed.subscribe(symbol) for symbol in MARKETS}
        for request_id in ids.values():
            reply = feed.reply(request_id)
            assert reply.error is None
            assert reply.result == {"status": "success"}
        feed.pump(1.0)
        for symbol, follower in feed.followers.items():
            assert follower.snapshots == 1, symbol
            assert follower.incrementals >= 20, symbol
            assert follower.next is not None
            assert follower.next > HOUR // 10**9 * 2, "about an hour of 3 trades a second"
        sequences = [m["sequence"] for m in feed.trade_frames]
        assert sequences == sorted(set(sequences)), "sequence increases"
        keys = {m["symbol"]: set(m) for m in feed.trade_frames}
        assert keys["BTCUSD"] == keys["sBTCUSDT"] == {"sequence", "symbol", "trades", "type"}
        assert keys["BTCUSDT"] == {"sequence", "symbol", "trades_p", "type"}
        feed.close()


def test_a_subscribe_at_the_first_trade_gets_a_short_snapshot() -> None:
    tape = {"BTCUSDT": TAPE["BTCUSDT"]}
    with Simulator(tape, SimulatorConfig(compression=1.0)) as sim:
        feed = Feed(sim, tape)
        feed.reply(feed.subscribe("BTCUSDT"))
        feed.pump(0.1)
        follower = feed.followers["BTCUSDT"]
        assert follower.snapshots == 1
        assert follower.next is not None
        assert 1 <= follower.next < 200
        feed.close()


def test_the_snapshot_size_is_configurable() -> None:
    with simulator(snapshot_size=1000) as sim:
        feed = Feed(sim)
        feed.reply(feed.subscribe("sBTCUSDT"))
        feed.pump(0.1)
        assert len(feed.trade_frames[0]["trades"]) == 1000
        feed.close()


def test_ping_pong_and_unsubscribe() -> None:
    with simulator() as sim:
        feed = Feed(sim)
        pong = feed.reply(feed.send("server.ping"))
        assert (pong.result, pong.error) == ("pong", None)
        for symbol in MARKETS:
            feed.reply(feed.subscribe(symbol))
        feed.pump(0.2)
        assert feed.reply(feed.send("trade.unsubscribe", "BTCUSD")).error is None
        before = len(feed.trade_frames)
        feed.pump(0.3)
        later = {m["symbol"] for m in feed.trade_frames[before:]}
        assert later == {"BTCUSDT", "sBTCUSDT"}
        assert feed.reply(feed.send("trade_p.unsubscribe")).error is None  # [] = all of trade_p
        before = len(feed.trade_frames)
        feed.pump(0.3)
        assert {m["symbol"] for m in feed.trade_frames[before:]} == {"sBTCUSDT"}
        feed.close()


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("trade.subscribe", ["ETHUSD"]),  # not in the tape
        ("trade.subscribe", [["BTCUSD"]]),  # the nested list of cryptofeed#828
        ("trade.subscribe", []),
        ("trade.subscribe", ["BTCUSDT"]),  # a perpetual needs trade_p
        ("trade_p.subscribe", ["BTCUSD"]),
        ("trade.unsubscribe", ["nope!"]),
        ("orderbook.subscribe", ["BTCUSD"]),
    ],
)
def test_bad_requests_get_error_6001_and_the_connection_lives(
    method: str, params: list[Any]
) -> None:
    with simulator() as sim:
        feed = Feed(sim)
        reply = feed.reply(feed.send(method, *params))
        assert reply.error == {"code": 6001, "message": "invalid argument"}
        assert reply.result is None
        assert feed.reply(feed.send("server.ping")).result == "pong"
        assert feed.trade_frames == []
        assert sim.stats.rejected == 1
        feed.close()


def test_a_request_that_is_not_json_gets_an_error_with_a_null_id() -> None:
    with simulator() as sim:
        feed = Feed(sim)
        feed.ws.send("ping?")
        ((_, data),) = list(feed.frames(0.3))
        assert orjson.loads(data) == {
            "error": {"code": 6001, "message": "invalid argument"},
            "id": None,
            "result": None,
        }
        feed.close()


def test_after_the_tape_ends_the_server_keeps_answering() -> None:
    short = {"BTCUSD": TAPE["BTCUSD"][:150]}  # may end inside a nanosecond: fine
    with Simulator(short, SimulatorConfig(compression=10_000.0)) as sim:
        deadline = time.monotonic() + 2
        while not sim.finished:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert sim.event_ns() >= short["BTCUSD"][-1].ts_ns
        assert sim.published("BTCUSD") == 150
        feed = Feed(sim, short)
        feed.reply(feed.subscribe("BTCUSD"))
        feed.pump(0.2)
        assert feed.followers["BTCUSD"].next == 150
        assert feed.followers["BTCUSD"].incrementals == 0
        assert feed.reply(feed.send("server.ping")).result == "pong"
        feed.close()


# Faults


def test_drop_kills_the_connection_without_a_close_frame() -> None:
    with simulator(Faults(drop_every=0.3, seed=1)) as sim:
        for _ in range(3):  # FIN or RST, at random: see both kinds of breakage
            feed = Feed(sim)
            feed.subscribe("BTCUSD")
            opcodes: list[int] = []
            with pytest.raises((websocket.WebSocketConnectionClosedException, OSError)):
                opcodes.extend(opcode for opcode, _ in feed.frames(5.0))
            assert ABNF.OPCODE_CLOSE not in opcodes

        assert sim.stats.drops == 3


def test_close_sends_a_clean_close_frame_1000() -> None:
    with simulator(Faults(close_every=0.2, seed=1)) as sim:
        feed = Feed(sim)
        feed.subscribe("BTCUSD")
        closes = [data for opcode, data in feed.frames(5.0) if opcode == ABNF.OPCODE_CLOSE]
        assert struct.unpack("!H", closes[0][:2]) == (1000,)
        assert sim.stats.closes == 1


def test_stall_goes_silent_then_resumes_without_a_hole() -> None:
    with simulator(Faults(stall_every=0.3, stall_seconds=1.0, seed=2)) as sim:
        feed = Feed(sim)
        feed.reply(feed.subscribe("BTCUSDT"))
        pings = []
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            pings.append(feed.send("server.ping"))
            feed.ws.ping(b"are you there")
            feed.pump(0.05)
        assert sim.stats.stalls >= 1
        silences = [b - a for a, b in zip(feed.arrivals, feed.arrivals[1:], strict=False)]
        assert max(silences) >= 0.9, "nothing at all, not even pongs, during a stall"
        # frames came after the first stall (a later stall may still be on when the loop ends)
        first_stall = next(i for i, gap in enumerate(silences) if gap >= 0.9)
        assert len(feed.arrivals) > first_stall + 2, "and then it resumed by itself"
        sim.calm()
        feed.pump(0.5)  # the pongs of a stall arrive late, trades continue without a hole
        assert all(feed.replies[i].result == "pong" for i in pings)
        assert feed.followers["BTCUSDT"].incrementals > 20
        feed.close()


def test_a_client_that_gives_up_on_a_stall_can_reconnect() -> None:
    with simulator(Faults(stall_every=0.01, stall_seconds=30.0, seed=3)) as sim:
        stalled = Feed(sim)
        stalled.subscribe("BTCUSD")
        stalled.pump(0.2)  # the subscribe may still be answered before the first tick
        assert list(stalled.frames(0.5)) == []
        stalled.close()
        sim.calm()
        feed = Feed(sim)
        feed.reply(feed.subscribe("BTCUSD"))
        feed.pump(0.2)
        assert feed.followers["BTCUSD"].snapshots == 1
        assert feed.followers["BTCUSD"].incrementals > 3
        feed.close()


def test_malformed_frames_come_in_addition_to_intact_trade_frames() -> None:
    with simulator(Faults(malformed_rate=0.5, seed=4)) as sim:
        feed = Feed(sim)
        for symbol in MARKETS:
            feed.reply(feed.subscribe(symbol))
        feed.pump(1.0)
        feed.close()
        injected = len(feed.garbage) + len(feed.bad_rows)
        assert 15 < injected <= sim.stats.malformed
        assert any(not g.endswith("}") for g in feed.garbage), "truncated or not JSON"
        assert feed.bad_rows
        for symbol, follower in feed.followers.items():
            assert follower.incrementals > 20, symbol


def test_injected_subscribe_errors_and_a_retry() -> None:
    with simulator(Faults(error_rate=1.0)) as sim:
        feed = Feed(sim)
        reply = feed.reply(feed.subscribe("BTCUSD"))
        assert reply.error == {"code": 6001, "message": "invalid argument"}
        feed.pump(0.1)
        assert feed.trade_frames == []
        assert sim.stats.errors == 1
        feed.close()
    with simulator(Faults(error_rate=0.5, seed=6)) as sim:
        feed = Feed(sim)
        attempts = 1
        while feed.reply(feed.subscribe("BTCUSD")).error is not None:
            attempts += 1
        assert sim.stats.errors == attempts - 1 > 0
        feed.pump(0.2)
        assert feed.followers["BTCUSD"].snapshots == 1
        assert feed.followers["BTCUSD"].incrementals > 3
        feed.close()


def test_unknown_keys_and_unknown_messages() -> None:
    with simulator(Faults(unknown_keys=True, seed=1)) as sim:
        feed = Feed(sim)
        feed.reply(feed.subscribe("BTCUSDT"))
        feed.pump(1.5)
        feed.close()
        assert all({"dts", "mts"} <= set(m) for m in feed.trade_frames)
        assert feed.odd
        assert len(feed.odd) <= sim.stats.unknown
        assert feed.followers["BTCUSDT"].incrementals > 30


# Snapshot faults


@pytest.mark.parametrize(("seed", "as_of"), [(5, "subscribe"), (0, "send")])
def test_a_late_snapshot_comes_after_incrementals_and_leaves_no_hole(seed: int, as_of: str) -> None:
    """The seed picks the variant: contents as of the subscribe, or as of when it is sent."""
    with simulator(Faults(late_snapshot_rate=1.0, seed=seed)) as sim:
        feed = Feed(sim)
        assert feed.reply(feed.subscribe("BTCUSDT")).error is None
        feed.pump(0.5)
        feed.close()
        assert sim.stats.late_snapshots == sim.stats.subscribes == 1
    follower = feed.followers["BTCUSDT"]  # checks that what arrived is one run of the tape
    kinds = [kind for kind, _, _ in follower.frames]
    assert kinds.count(SNAPSHOT) == 1
    late = kinds.index(SNAPSHOT)
    assert 1 <= late <= 3, "held back for 1 to 3 incrementals"
    _, start, end = follower.frames[late]
    (_, first_start, _), (_, _, sent_end) = follower.frames[0], follower.frames[late - 1]
    if as_of == "subscribe":
        assert end == first_start, "the incrementals continue right after its newest row"
    else:
        assert end == sent_end, "as of when it is sent: up to the last incremental"
        assert start < first_start, "so it overlaps every incremental sent before it"
    assert follower.incrementals > 10


def test_a_lost_snapshot_never_comes_but_the_incrementals_do() -> None:
    with simulator(Faults(lost_snapshot_rate=1.0)) as sim:
        feed = Feed(sim)
        published = sim.published("BTCUSD")
        reply = feed.reply(feed.subscribe("BTCUSD"))
        assert (reply.error, reply.result) == (None, {"status": "success"})
        feed.pump(0.5)
        feed.close()
        assert sim.stats.lost_snapshots == sim.stats.subscribes == 1
    follower = feed.followers["BTCUSD"]
    assert (follower.snapshots, feed.bad_snapshots) == (0, [])
    assert {m["type"] for m in feed.trade_frames} == {"incremental"}
    assert follower.first is not None
    assert follower.first >= published, "the stream starts at the subscribe"
    assert follower.incrementals > 10


def test_a_bad_snapshot_carries_no_readable_trade() -> None:
    with simulator(Faults(bad_snapshot_rate=1.0, seed=1)) as sim:
        feed = Feed(sim)
        for _ in range(3):  # a subscribe of a symbol already subscribed gets a snapshot too
            for symbol in MARKETS:
                assert feed.reply(feed.subscribe(symbol)).error is None
        feed.pump(0.3)
        feed.close()
        assert sim.stats.bad_snapshots == len(feed.bad_snapshots) == 9
    sizes = set()
    for frame in feed.bad_snapshots:
        msg = protocol.parse(frame)
        assert isinstance(msg, protocol.TradesMessage)
        assert msg.kind == SNAPSHOT
        assert fills(instrument(msg.symbol), msg.rows) == ([], len(msg.rows))
        sizes.add(len(msg.rows))
    assert sizes == {0, 200}, "empty, or as long as a real one with every row broken"
    for symbol, follower in feed.followers.items():
        assert follower.snapshots == 0, symbol
        assert follower.incrementals > 5, symbol


def test_unsubscribe_and_subscribe_again_gets_a_fresh_snapshot_without_a_hole() -> None:
    """What a capture does when the snapshot does not come: the stream resumes, no trade lost."""
    with simulator(Faults(lost_snapshot_rate=0.5, seed=0)) as sim:  # seed 0: the first is lost
        feed = Feed(sim)
        follower = feed.followers.setdefault(
            "BTCUSDT", Follower("BTCUSDT", TAPE["BTCUSDT"], 200, early=True)
        )
        for attempt in range(1, 10):
            assert feed.reply(feed.subscribe("BTCUSDT")).error is None
            feed.pump(0.2)
            if follower.snapshots:
                break
            assert follower.incrementals >= 5 * attempt, "incrementals flow without a snapshot"
            feed.unsubscribe("BTCUSDT")  # and at once subscribe again, not waiting for the reply
        feed.pump(0.3)
        feed.close()
        assert sim.stats.lost_snapshots == attempt - 1 >= 1
        assert sim.stats.subscribes == attempt
    kinds = [kind for kind, _, _ in follower.frames]
    fresh = kinds.index(SNAPSHOT)
    assert kinds[fresh + 1 :].count(INCREMENTAL) > 10, "and the stream goes on from it"
    _, start, end = follower.frames[fresh]
    _, _, before = follower.frames[fresh - 1]
    assert start <= before <= end, "it reaches back to the last trade before the unsubscribe"


@pytest.mark.parametrize("lost", [0.0, 1.0])
def test_a_duplicate_subscribe_neither_skips_nor_repeats_an_incremental(lost: float) -> None:
    with simulator(Faults(lost_snapshot_rate=lost)) as sim:
        feed = Feed(sim)
        for _ in range(5):
            assert feed.reply(feed.subscribe("BTCUSD")).error is None
            feed.pump(0.1)
        feed.close()
        assert sim.stats.subscribes == 5
        assert sim.stats.lost_snapshots == 5 * lost
    follower = feed.followers["BTCUSD"]  # each incremental continues the previous one exactly
    assert follower.incrementals > 20
    assert follower.snapshots == 5 - 5 * lost
    for (_, _, before), (kind, _, end) in itertools.pairwise(follower.frames):
        if kind == SNAPSHOT:
            assert end == before, "a fresh snapshot ends where the stream is"


def test_an_unsubscribe_cancels_a_late_snapshot() -> None:
    with simulator(Faults(late_snapshot_rate=1.0, seed=0)) as sim:  # held for 3, then 2
        feed = Feed(sim)
        feed.subscribe("BTCUSDT")
        feed.subscribe("BTCUSD")
        by_name = feed.unsubscribe("BTCUSDT")
        every = feed.send("trade.unsubscribe")  # [] = every trade.* subscription
        feed.pump(0.3)
        assert sim.stats.late_snapshots == 2
        assert feed.reply(by_name).error is feed.reply(every).error is None
        assert feed.trade_frames[feed.reply_at[every] :] == [], "nothing after the unsubscribes"
        assert {kind for f in feed.followers.values() for kind, _, _ in f.frames} <= {INCREMENTAL}
        sim.calm()  # a cancelled snapshot still held would now be sent at the next tick
        feed.reply(feed.subscribe("BTCUSD"))
        feed.pump(0.3)
        feed.close()
    assert feed.followers["BTCUSD"].snapshots == 1, "a fresh subscribe gets its own snapshot"
    assert feed.followers["BTCUSDT"].snapshots == 0


def test_the_stats_count_every_snapshot_fault() -> None:
    faults = Faults(late_snapshot_rate=0.3, lost_snapshot_rate=0.2, bad_snapshot_rate=0.2, seed=8)
    with simulator(faults) as sim:
        feed = Feed(sim)
        subscribes = []
        for _ in range(20):
            subscribes.append(feed.subscribe("sBTCUSDT"))
            feed.pump(0.15)  # 7 batch ticks: a late snapshot comes after 3 at most
            feed.reply(feed.unsubscribe("sBTCUSDT"))
            # each subscription on its own: after a lost one, the next snapshot may not reach back
            del feed.followers["sBTCUSDT"]
        feed.close()
        stats = sim.stats
    starts = [feed.reply_at[i] for i in subscribes]
    late = lost = 0
    for start, end in zip(starts, [*starts[1:], len(feed.trade_frames)], strict=True):
        kinds = [m["type"] for m in feed.trade_frames[start:end]]
        assert kinds.count(SNAPSHOT) <= 1
        if SNAPSHOT not in kinds:
            lost += 1
        elif kinds[0] != SNAPSHOT:
            late += 1
    lost -= len(feed.bad_snapshots)
    assert (stats.late_snapshots, stats.lost_snapshots, stats.bad_snapshots) == (
        late,
        lost,
        len(feed.bad_snapshots),
    )
    assert min(late, lost, len(feed.bad_snapshots)) >= 1
    assert stats.subscribes == 20


def test_calm_and_until_event_ns_stop_the_faults() -> None:
    snapshot_faults = {"late_snapshot_rate": 1.0, "lost_snapshot_rate": 1.0}
    with simulator(Faults(drop_every=0.01, close_every=0.01, seed=1, **snapshot_faults)) as sim:
        sim.calm()
        feed = Feed(sim)
        feed.reply(feed.subscribe("BTCUSD"))
        feed.pump(0.5)
        assert feed.followers["BTCUSD"].incrementals > 10
        assert feed.followers["BTCUSD"].frames[0][0] == SNAPSHOT
        feed.close()
        assert (sim.stats.drops, sim.stats.closes, sim.stats.lost_snapshots) == (0, 0, 0)
    faults = Faults(error_rate=1.0, bad_snapshot_rate=1.0, until_event_ns=START + HOUR)
    with simulator(faults) as sim:
        feed = Feed(sim)
        assert feed.reply(feed.subscribe("BTCUSD")).error is None
        feed.pump(0.1)
        feed.close()
        assert (sim.stats.errors, sim.stats.bad_snapshots) == (0, 0)
        assert feed.followers["BTCUSD"].snapshots == 1


def test_chaos_includes_the_snapshot_faults() -> None:
    chaos = Faults.chaos()
    rates = (chaos.late_snapshot_rate, chaos.lost_snapshot_rate, chaos.bad_snapshot_rate)
    assert all(0 < rate <= 0.1 for rate in rates)
    assert Faults() == Faults(late_snapshot_rate=0, lost_snapshot_rate=0, bad_snapshot_rate=0)


def test_a_spot_symbol_with_a_digit_is_served_as_spot() -> None:
    """s1INCHUSDT, of the simulate command's default market: trade.subscribe, rows under
    ``trades``, priceEp and quantity scaled 10^8, at 1INCH's price level."""
    assert "s1INCHUSDT" in DEFAULT_SYMBOLS
    tape = synthetic_tape(DEFAULT_SYMBOLS, START, HOUR, seed=5)
    with Simulator(tape, SimulatorConfig(compression=FAST, start_ns=START + HOUR // 2)) as sim:
        feed = Feed(sim, tape)
        refused = feed.reply(feed.send("trade_p.subscribe", "s1INCHUSDT"))
        assert refused.error == {"code": 6001, "message": "invalid argument"}
        feed.followers["s1INCHUSDT"] = Follower("s1INCHUSDT", tape["s1INCHUSDT"], 200)
        assert feed.reply(feed.send("trade.subscribe", "s1INCHUSDT")).error is None
        feed.pump(0.3)
        feed.close()
    assert set(feed.trade_frames[0]) == {"sequence", "symbol", "trades", "type"}
    rows = [row for m in feed.trade_frames for row in m["trades"]]
    assert all(type(price) is int and type(qty) is int for _, _, price, qty in rows)
    assert all(0.3 * 10**8 < price < 0.5 * 10**8 for _, _, price, _ in rows), "~0.4 USDT"
    follower = feed.followers["s1INCHUSDT"]  # decodes them as spot, exactly
    assert (follower.snapshots, follower.incrementals > 5) == (1, True)


def test_serve_runs_until_ctrl_c() -> None:
    seen: list[str] = []

    def client(sim: Simulator) -> None:
        feed = Feed(sim)
        seen.append(str(feed.reply(feed.send("server.ping")).result))
        feed.close()
        raise KeyboardInterrupt

    stats = serve(TAPE, SimulatorConfig(start_ns=START + HOUR), on_ready=client)
    assert seen == ["pong"]
    assert stats.connections == 1


def test_simulate_command_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradelake.cli", "simulate", "--port", "0", "--hours", "0.01"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        url = banner.split(" on ", 1)[1].split()[0]
        ws = create_connection(url, timeout=3)
        ws.send('{"id":7,"method":"trade.subscribe","params":["sBTCUSDT"]}')
        assert orjson.loads(ws.recv()) == {"error": None, "id": 7, "result": {"status": "success"}}
        snapshot = orjson.loads(ws.recv())
        assert (snapshot["type"], len(snapshot["trades"])) == ("snapshot", 200)
        ws.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
