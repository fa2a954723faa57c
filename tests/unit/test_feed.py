"""The feed's snapshot discipline, one case at a time, with no socket and no clock.

Each test plays frames as Phemex (or a misbehaving Phemex) would send them and checks what the
feed takes, declares and asks for. The random interleavings of all of these are in
test_exactly_once.py.
"""

from __future__ import annotations

import orjson
import pytest

from tradelake.cursor import Cursor
from tradelake.feed import NEVER, Feed, FeedConfig, Output
from tradelake.markets import instrument
from tradelake.model import EARLIEST_NS, INCREMENTAL, SNAPSHOT, Fill, Gap, Trade
from tradelake.simulator import wire

T0 = 1_795_737_600_000_000_000  # 2026-11-27T00:00Z
ONE = 10**10
NOW_NS = T0 + 10**9
CONFIG = FeedConfig(snapshot_timeout_s=5.0, snapshot_attempts=3, max_held_fills=10)


def fill(dt: int, side: str = "buy", price: int = 10) -> Fill:
    return Fill(T0 + dt, side, price * ONE, ONE)


def message(symbol: str, kind: str, *fills: Fill) -> str:
    rows = list(fills)[::-1] if kind == SNAPSHOT else list(fills)
    inst = instrument(symbol)
    return wire.trades_message(inst, wire.encode_rows(inst, rows), kind, 1)


def snapshot(*fills: Fill, symbol: str = "BTCUSD") -> str:
    """A snapshot of ``fills`` (given oldest first; sent newest first, as Phemex does)."""
    return message(symbol, SNAPSHOT, *fills)


def incremental(*fills: Fill, symbol: str = "BTCUSD") -> str:
    return message(symbol, INCREMENTAL, *fills)


def requests(out: Output | list[str]) -> list[tuple[str, list[str]]]:
    sent = out.requests if isinstance(out, Output) else out
    return [(r["method"], r["params"]) for r in map(orjson.loads, sent)]


class Session:
    """A feed on one connection; ``taken`` and ``gaps`` collect what it produced."""

    def __init__(
        self,
        symbols: tuple[str, ...] = ("BTCUSD",),
        cursor: Cursor | None = None,
        config: FeedConfig = CONFIG,
    ) -> None:
        self.feed = Feed({s: instrument(s) for s in symbols}, cursor or Cursor(), config)
        self.now = 0.0
        self.taken: list[Trade] = []
        self.gaps: list[Gap] = []
        self.sent = self.feed.connect(self.now)

    def ids(self, method: str) -> list[int]:
        return [r["id"] for r in map(orjson.loads, self.sent) if r["method"].endswith(method)]

    def ack(self, method: str = "subscribe", error: bool = False) -> Output:
        request_id = self.ids(method)[-1]
        reply = wire.error_reply(request_id) if error else wire.reply(request_id, {"ok": 1})
        return self.frame(reply)

    def frame(self, text: str, recv_ns: int = NOW_NS) -> Output:
        return self.take(self.feed.receive(text, recv_ns, self.now))

    def tick(self, seconds: float) -> Output:
        self.now += seconds
        return self.take(self.feed.tick(self.now, NOW_NS))

    def take(self, out: Output) -> Output:
        self.taken += out.trades
        self.gaps += out.gaps
        self.sent += out.requests
        return out

    def times(self) -> list[tuple[int, int, str]]:
        return [(t.ts_ns - T0, t.k, t.source) for t in self.taken]


def cursor_at(*fills: Fill) -> Cursor:
    cursor = Cursor()
    session = Session()
    session.frame(snapshot(*fills))
    cursor.advance(session.taken)
    return cursor


def test_incrementals_before_the_snapshot_are_held_then_taken_once() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    s.ack()
    assert s.frame(incremental(fill(3), fill(4))) == Output(), "held: the snapshot is not in"
    assert s.feed.positions()["BTCUSD"] == T0 + 1, "no incremental moves the position first"
    # the late snapshot was cut after the incremental: it holds 3 and 4 as well
    s.frame(snapshot(fill(0), fill(1), fill(2), fill(3), fill(4)))
    s.frame(incremental(fill(5)))
    assert s.times() == [(2, 0, SNAPSHOT), (3, 0, SNAPSHOT), (4, 0, SNAPSHOT), (5, 0, INCREMENTAL)]
    assert s.gaps == []


def test_a_snapshot_cut_at_the_subscribe_joins_the_held_incrementals() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    s.frame(incremental(fill(3), fill(3)))  # identical fills in one nanosecond
    s.frame(snapshot(fill(0), fill(1), fill(2)))
    assert s.times() == [(2, 0, SNAPSHOT), (3, 0, INCREMENTAL), (3, 1, INCREMENTAL)]
    assert s.gaps == []


def test_a_snapshot_ahead_of_the_incrementals_in_flight_is_not_taken_twice() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    s.frame(snapshot(fill(0), fill(1), fill(2), fill(3), fill(3)))
    s.frame(incremental(fill(3), fill(3), fill(4)))  # repeats 3 (x2): the snapshot had them
    assert s.times() == [(2, 0, SNAPSHOT), (3, 0, SNAPSHOT), (3, 1, SNAPSHOT), (4, 0, INCREMENTAL)]
    assert s.gaps == []


def test_held_fills_complete_a_snapshot_cut_inside_its_oldest_nanosecond() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    s.frame(incremental(fill(5), fill(5), fill(5)))
    s.frame(snapshot(fill(5), fill(5), fill(6)))  # two of the three fills of 5 fit in it
    assert [(t.ts_ns - T0, t.k) for t in s.taken] == [(5, 0), (5, 1), (5, 2), (6, 0)]
    assert [g.reason for g in s.gaps] == ["snapshot_short"]  # 2 to 4 are still unproven


def test_held_incrementals_older_than_the_snapshot_are_declared_not_joined() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    s.frame(incremental(fill(2)))
    s.frame(snapshot(fill(5), fill(6)))  # does not reach back to 2: no proof of 3 and 4
    assert [t.ts_ns - T0 for t in s.taken] == [5, 6]
    assert [(g.from_ts_ns - T0, g.to_ts_ns - T0, g.reason) for g in s.gaps] == [
        (1, 5, "snapshot_short")
    ]


def test_a_snapshot_that_never_comes_is_asked_for_again_on_the_same_connection() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    s.ack()
    s.frame(incremental(fill(3)))
    assert s.tick(4.9) == Output()
    out = s.tick(0.2)
    assert requests(out) == [("trade.unsubscribe", ["BTCUSD"]), ("trade.subscribe", ["BTCUSD"])]
    assert s.feed.stats.symbols["BTCUSD"].resubscribes == 1
    s.frame(incremental(fill(4)))  # the old subscription's last words: dropped
    s.frame(snapshot(fill(3), fill(4)))  # a stale one: it cannot vouch for what comes next
    s.ack("unsubscribe")
    s.frame(incremental(fill(6)))  # the new subscription's, before its ack: held
    s.frame(snapshot(fill(0), fill(2), fill(3), fill(4), fill(5)))
    s.ack()
    assert [t.ts_ns - T0 for t in s.taken] == [2, 3, 4, 5, 6]
    assert s.gaps == []


def test_what_was_held_bridges_to_the_next_subscriptions_snapshot() -> None:
    """The snapshot never came, but 3 to 5 did: a short new snapshot (5 to 7) that reaches
    back into them proves the way from 3 on, so only the cursor to 3 is declared."""
    s = Session(cursor=cursor_at(fill(1)))
    s.ack()
    s.frame(incremental(fill(3)))
    s.frame(incremental(fill(4)))
    s.tick(5.0)
    s.frame(incremental(fill(5)))  # the old subscription's last word, before its unsubscribe
    s.ack("unsubscribe")
    s.ack()
    s.frame(incremental(fill(7)))
    s.frame(snapshot(fill(5), fill(6), fill(7)))
    assert [t.ts_ns - T0 for t in s.taken] == [3, 4, 5, 6, 7]
    assert [(g.from_ts_ns - T0, g.to_ts_ns - T0, g.reason) for g in s.gaps] == [
        (1, 3, "snapshot_short")
    ]


def test_a_bridge_that_ends_before_the_new_snapshot_begins_is_not_joined() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    s.frame(incremental(fill(3)))
    s.sent = s.feed.connect(s.now)  # the connection died waiting for the snapshot
    s.frame(snapshot(fill(6), fill(7)))  # nothing vouches for 4 and 5
    assert [t.ts_ns - T0 for t in s.taken] == [6, 7]
    assert [(g.from_ts_ns - T0, g.to_ts_ns - T0) for g in s.gaps] == [(1, 6)]


def test_a_reconnect_bridges_what_was_held_on_the_dead_connection() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    s.frame(incremental(fill(3), fill(3)))
    s.sent = s.feed.connect(s.now)
    s.frame(snapshot(fill(3), fill(4)))  # holds one of the two fills of 3
    assert [(t.ts_ns - T0, t.k) for t in s.taken] == [(3, 0), (3, 1), (4, 0)]
    assert [(g.from_ts_ns - T0, g.to_ts_ns - T0) for g in s.gaps] == [(1, 3)]


@pytest.mark.parametrize(
    "bad",
    [
        snapshot(),
        '{"sequence":1,"symbol":"BTCUSD","trades":[[1,"Hold",1,1],"x"],"type":"snapshot"}',
        wire.trades_message(instrument("BTCUSDT"), [[T0, "Buy", "1", "1"]], SNAPSHOT, 1).replace(
            "BTCUSDT", "BTCUSD"
        ),  # decimal strings under trades_p for an inverse contract
    ],
    ids=["empty", "no valid row", "rows of another market"],
)
def test_an_unusable_snapshot_is_asked_for_again(bad: str) -> None:
    s = Session(cursor=cursor_at(fill(1)))
    out = s.frame(bad)
    assert requests(out) == [("trade.unsubscribe", ["BTCUSD"]), ("trade.subscribe", ["BTCUSD"])]
    assert s.taken == []


def test_no_snapshot_after_every_attempt_takes_the_trades_with_a_gap_before_them() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    s.tick(5.0)
    s.tick(5.0)
    assert s.feed.stats.symbols["BTCUSD"].resubscribes == 2
    s.ack()
    s.frame(incremental(fill(7)))
    assert s.taken == []
    s.tick(5.0)  # the third subscribe without a snapshot: give up, take what is held
    s.frame(incremental(fill(8)))
    assert [t.ts_ns - T0 for t in s.taken] == [7, 8]
    assert [(g.from_ts_ns - T0, g.to_ts_ns - T0, g.reason) for g in s.gaps] == [
        (1, 7, "snapshot_missing")
    ]


def test_too_many_held_fills_give_up_waiting() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    for dt in range(2, 12):
        s.frame(incremental(fill(dt)))
    assert s.taken == []
    s.frame(incremental(fill(12)))  # the 11th fill held: over max_held_fills
    assert [t.ts_ns - T0 for t in s.taken] == list(range(2, 13))
    assert [g.reason for g in s.gaps] == ["snapshot_missing"]


def test_a_snapshot_once_live_is_ignored() -> None:
    s = Session(cursor=cursor_at(fill(1)))
    s.frame(snapshot(fill(0), fill(1), fill(2)))
    s.frame(snapshot(fill(2), fill(3), fill(4)))  # a stray: the incrementals carry 3 and 4
    s.frame(incremental(fill(3), fill(4)))
    assert [(t.ts_ns - T0, t.source) for t in s.taken] == [
        (2, SNAPSHOT),
        (3, INCREMENTAL),
        (4, INCREMENTAL),
    ]


def test_a_first_start_declares_everything_before_its_first_trade() -> None:
    s = Session()
    s.frame(snapshot(fill(3), fill(4)))
    assert [(g.from_ts_ns, g.to_ts_ns - T0, g.reason) for g in s.gaps] == [
        (EARLIEST_NS, 3, "no_cursor")
    ]


@pytest.mark.parametrize(
    ("late_s", "taken"),
    [(86_400.5, False), (86_399, True), (-59, True), (-60.5, False)],
)
def test_rows_far_from_their_receipt_time_are_bad(late_s: float, taken: bool) -> None:
    """More than a day late or a minute early (by the local clock) is a bad row."""
    s = Session()
    s.frame(snapshot(fill(0)), recv_ns=T0)
    s.frame(incremental(fill(1)), recv_ns=T0 + 1 + int(late_s * 1e9))
    assert (len(s.taken) == 2) is taken
    assert s.feed.stats.symbols["BTCUSD"].bad_rows == (0 if taken else 1)


def test_the_time_window_can_be_switched_off_for_a_replay() -> None:
    replay = FeedConfig(max_row_age_s=None, max_row_lead_s=None)
    s = Session(config=replay)
    s.frame(snapshot(fill(0)), recv_ns=T0 + 10**18)  # 30 years later
    assert len(s.taken) == 1


def test_refusals_in_a_row_give_up_that_symbol_only_counting_across_reconnects() -> None:
    s = Session(("BTCUSD", "BTCUSDT"), config=FeedConfig(max_subscribe_errors=3))
    s.ack(error=True)  # the last subscribe sent is BTCUSDT's
    s.tick(1.0)
    assert requests(s.sent[-1:]) == [("trade_p.subscribe", ["BTCUSDT"])]
    s.ack(error=True)
    s.sent = s.feed.connect(s.now)  # a reconnect does not reset the count
    s.ack(error=True)
    assert s.feed.stats.rejected == {
        "BTCUSDT": "Phemex rejected trade_p.subscribe for BTCUSDT: 6001 invalid argument "
        "(3 times in a row)"
    }
    assert s.feed.symbols == ["BTCUSD"]
    s.frame(incremental(fill(1), symbol="BTCUSDT"))
    s.frame(snapshot(fill(1)))
    assert [t.symbol for t in s.taken] == ["BTCUSD"]
    assert requests(s.feed.connect(s.now)) == [("trade.subscribe", ["BTCUSD"])]


def test_a_successful_subscribe_resets_the_refusal_count() -> None:
    s = Session(config=FeedConfig(max_subscribe_errors=2))
    s.ack(error=True)
    s.tick(1.0)
    s.ack()
    s.sent = s.feed.connect(s.now)
    s.ack(error=True)
    assert s.feed.stats.rejected == {}


def test_json_nested_too_deep_is_a_malformed_frame_and_the_next_frame_is_taken() -> None:
    """orjson refuses more than 1024 levels: a counted malformed frame, not a crash."""
    s = Session()
    s.frame(snapshot(fill(1), fill(2)))
    deep = "[" * 100_000 + "]" * 100_000
    assert not s.frame(deep).trades
    s.frame(incremental(fill(3)))
    assert s.feed.stats.malformed_frames == 1
    assert [t.ts_ns - T0 for t in s.taken] == [1, 2, 3]


@pytest.mark.parametrize(
    ("symbol", "row"),
    [
        ("BTCUSD", f'[{T0 + 3},"Buy",{2**64 + 1},1]'),  # a price past 2^64: a float to orjson
        ("BTCUSD", f'[{T0 + 3},"Buy",100000,{10**30}]'),
        ("BTCUSD", f'[{2**70},"Buy",100000,1]'),
        ("BTCUSD", f'[{T0 + 3},"Buy",100000,-1]'),  # a negative quantity
        ("BTCUSD", f'[{T0 + 3},"Sell",-100000,1]'),
        ("BTCUSDT", f'[{T0 + 3},"Buy","{"9" * 400}","1"]'),
        ("BTCUSDT", f'[{T0 + 3},"Buy","10","-1"]'),
        ("BTCUSDT", f'[{T0 + 3},"Buy","10","1e999"]'),
    ],
    ids=[
        "price>2^64",
        "qty>2^64",
        "time>2^64",
        "negative qty",
        "negative price",
        "400-digit price",
        "negative qty string",
        "qty 1e999",
    ],
)
def test_a_hostile_number_is_a_bad_row_and_its_neighbours_are_taken(symbol: str, row: str) -> None:
    s = Session((symbol,), config=FeedConfig(max_row_age_s=None, max_row_lead_s=None))
    s.frame(snapshot(fill(1), symbol=symbol))
    good = incremental(fill(2), fill(4), symbol=symbol)
    rows_key = '"trades_p":[' if symbol == "BTCUSDT" else '"trades":['
    hostile = good.replace(rows_key, rows_key + row + ",", 1)
    assert hostile != good
    s.frame(hostile)
    s.frame(incremental(fill(5), symbol=symbol))
    assert s.feed.stats.symbols[symbol].bad_rows == 1
    assert s.feed.stats.malformed_frames == 0
    assert [t.ts_ns - T0 for t in s.taken] == [1, 2, 4, 5]


def test_without_a_clock_reading_the_receipt_time_is_the_deadline_clock() -> None:
    """An embedding hands over frames and receipt times only: deadlines follow ``recv_ns``."""
    feed = Feed({"BTCUSD": instrument("BTCUSD")}, Cursor(), CONFIG)
    feed.connect(NOW_NS / 1e9)
    out = feed.receive(snapshot(), NOW_NS + 2 * 10**9)  # empty: asked for again, due 5 s on
    assert requests(out) == [("trade.unsubscribe", ["BTCUSD"]), ("trade.subscribe", ["BTCUSD"])]
    assert feed.due() == (NOW_NS + 2 * 10**9) / 1e9 + CONFIG.snapshot_timeout_s


def test_the_next_deadline_is_the_earliest_of_the_subscriptions_still_waiting() -> None:
    s = Session(("BTCUSD", "sBTCUSDT", "BTCUSDT"))
    assert s.feed.due() == CONFIG.snapshot_timeout_s  # all three subscribed at 0
    s.frame(snapshot(fill(1)))
    s.frame(snapshot(fill(1), symbol="sBTCUSDT"))
    assert s.feed.due() == CONFIG.snapshot_timeout_s  # BTCUSDT still waits
    s.now = 2.0
    s.ack(error=True)  # BTCUSDT's subscribe refused: retried after the backoff (1 s)
    assert s.feed.due() == 3.0
    s.tick(1.0)  # subscribed again at 3: its snapshot is due at 8
    assert s.feed.due() == 3.0 + CONFIG.snapshot_timeout_s
    s.frame(snapshot(fill(1), symbol="BTCUSDT"))
    assert s.feed.due() == NEVER  # every symbol live: nothing to wait for
    s.feed.connect(10.0)
    assert s.feed.due() == 10.0 + CONFIG.snapshot_timeout_s  # a reconnect waits again


def test_the_peak_lag_holds_the_largest_since_it_was_taken() -> None:
    """A backlog read in a burst (lag falling from seconds to nothing within milliseconds) shows
    in the peak, whichever frame was the last before the status callback read it."""
    s = Session()
    s.ack()
    s.frame(snapshot(fill(0)), recv_ns=T0 + 1_000)
    for dt, lag in ((10, 3 * 10**9), (20, 5 * 10**6), (30, 1_000)):
        s.frame(incremental(fill(dt)), recv_ns=T0 + dt + lag)
    stats = s.feed.stats
    assert (stats.last_lag_ns, stats.peak_lag_ns) == (1_000, 3 * 10**9)
    stats.peak_lag_ns = 0  # taken
    s.frame(incremental(fill(40)), recv_ns=T0 + 40 + 7_000)
    assert stats.peak_lag_ns == 7_000
