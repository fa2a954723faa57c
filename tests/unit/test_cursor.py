"""Exactly once across reconnects, restarts and crashes: the properties of ARCHITECTURE.md §5.

The property test plays a random tape through random sessions: each session subscribes (a
snapshot of the last S published trades), receives some incremental frames, then reconnects
(state kept), restarts (flush, resume from the saved cursor) or crashes (unflushed trades lost,
resume from the saved cursor). Whatever happens, the lake holds every trade of the tape since it
started, except inside declared gaps, and never one twice.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelake.cursor import NO_CURSOR, Cursor, Reconciler
from tradelake.model import Fill, Gap, Trade

SYMBOL = "BTCUSD"
Identity = tuple[int, str, int, int, int]


def identities(fills: list[Fill]) -> list[Identity]:
    """The tape's ground truth: k counts identical fills earlier in the same nanosecond."""
    seen: Counter[Fill] = Counter()
    out = []
    for f in fills:
        out.append((*f, seen[f]))
        seen[f] += 1
    return out


def identity(t: Trade) -> Identity:
    return (t.ts_ns, t.side, t.price, t.qty, t.k)


FILL_VALUES = st.tuples(st.sampled_from(["buy", "sell"]), st.sampled_from([10, 20]))
# frames of nanosecond groups of (side, price) pairs; tiny value domains force identical tuples
TAPE_SHAPES = st.lists(
    st.lists(
        st.tuples(st.integers(1, 3), st.lists(FILL_VALUES, min_size=1, max_size=4)),
        min_size=1,
        max_size=3,
    ),
    min_size=1,
    max_size=30,
)


def frames_of(shape: list[list[tuple[int, list[tuple[str, int]]]]]) -> list[list[Fill]]:
    """Frames of fills in time order; a nanosecond never spans two frames."""
    frames, ts = [], 1_000
    for groups in shape:
        frame = []
        for step, values in groups:
            ts += step
            frame += [Fill(ts, side, price, 1) for side, price in values]
        frames.append(frame)
    return frames


@dataclass
class Lake:
    """An in-memory sink, cursor store and gap ledger with crash semantics."""

    written: list[Trade] = field(default_factory=list)
    buffer: list[Trade] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    saved: dict[str, object] = field(default_factory=lambda: Cursor().to_json())

    def flush(self) -> None:
        cursor = Cursor.from_json(self.saved)
        cursor.advance(self.buffer)
        self.written += self.buffer
        self.buffer = []
        self.saved = cursor.to_json()

    def resume(self) -> Reconciler:
        return Reconciler(SYMBOL, Cursor.from_json(self.saved).symbols.get(SYMBOL))


@settings(max_examples=400, deadline=None)
@given(shape=TAPE_SHAPES, snapshot_size=st.integers(1, 12), data=st.data())
def test_the_lake_equals_the_tape_outside_gaps_and_never_twice(
    shape: list[list[tuple[int, list[tuple[str, int]]]]], snapshot_size: int, data: st.DataObject
) -> None:
    frames = frames_of(shape)
    lake = Lake()
    reconciler = lake.resume()
    start_ts = NO_CURSOR  # oldest trade of the snapshot the lake (re)started from
    position = data.draw(st.integers(0, len(frames)), label="first subscribe")
    while True:
        published = [f for frame in frames[:position] for f in frame]
        snapshot = published[-snapshot_size:]
        if reconciler.ts_ns == NO_CURSOR and snapshot:
            start_ts = snapshot[0].ts_ns
        trades, gaps = reconciler.snapshot(snapshot, recv_ns=0, seq=0)
        lake.buffer += trades
        lake.gaps += gaps
        end = data.draw(st.integers(min(position + 1, len(frames)), len(frames)), label="cut")
        for frame in frames[position:end]:
            trades, gaps = reconciler.incremental(frame, recv_ns=0, seq=1)
            assert not gaps, "in-order incrementals never open a gap"
            lake.buffer += trades
            if data.draw(st.booleans(), label="flush"):
                lake.flush()
        if end == len(frames):
            lake.flush()
            break
        outcome = data.draw(st.sampled_from(["reconnect", "restart", "crash"]), label="then")
        if outcome == "restart":
            lake.flush()
        if outcome == "crash":
            lake.buffer = []
        if outcome != "reconnect":
            reconciler = lake.resume()
        position = data.draw(st.integers(end, len(frames)), label="resubscribe at")

    truth = identities([f for frame in frames for f in frame])
    got = [identity(t) for t in lake.written]
    assert len(got) == len(set(got)), "a trade was written twice"
    assert set(got) <= set(truth), "a trade that never happened"
    delivered_until = frames[-1][-1].ts_ns
    missing = [i for i in truth if start_ts < i[0] <= delivered_until and i not in set(got)]
    for ts, *_ in missing:
        assert any(g.from_ts_ns <= ts <= g.to_ts_ns for g in lake.gaps), f"lost {ts} outside gaps"
    for g in lake.gaps:
        assert g.from_ts_ns <= g.to_ts_ns


def fill(ts: int, side: str = "buy", price: int = 10, qty: int = 1) -> Fill:
    return Fill(ts, side, price, qty)


def test_identical_tuples_in_one_nanosecond_are_distinct_trades() -> None:
    trades, _ = Reconciler(SYMBOL).incremental([fill(5), fill(5), fill(5, "sell"), fill(5)], 0, 0)
    assert [(t.side, t.k) for t in trades] == [("buy", 0), ("buy", 1), ("sell", 0), ("buy", 2)]


def test_snapshot_at_the_cursor_nanosecond_is_reconciled_by_count() -> None:
    reconciler = Reconciler(SYMBOL)
    reconciler.incremental([fill(4), fill(5), fill(5)], 0, 0)
    # reconnect: the snapshot holds three identical fills at 5 (one arrived while away) and a 6
    trades, gaps = reconciler.snapshot([fill(4), fill(5), fill(5), fill(5), fill(6)], 0, 0)
    assert [(t.ts_ns, t.k, t.source) for t in trades] == [(5, 2, "snapshot"), (6, 0, "snapshot")]
    assert gaps == []
    assert reconciler.duplicates == 3


def test_a_snapshot_that_does_not_reach_the_cursor_declares_the_interval_between() -> None:
    reconciler = Reconciler(SYMBOL)
    reconciler.incremental([fill(100)], 0, 0)
    trades, gaps = reconciler.snapshot([fill(250), fill(300)], recv_ns=7, seq=0)
    assert len(trades) == 2
    assert gaps == [Gap(SYMBOL, 100, 250, 7, "snapshot_short")]


def test_a_fill_older_than_the_cursor_is_dropped_and_declared() -> None:
    reconciler = Reconciler(SYMBOL)
    reconciler.incremental([fill(100)], 0, 0)
    trades, gaps = reconciler.incremental([fill(90), fill(110)], 3, 0)
    assert [t.ts_ns for t in trades] == [110]
    assert gaps == [Gap(SYMBOL, 90, 90, 3, "out_of_order")]


def test_cursor_advances_per_symbol_to_the_newest_nanosecond_only() -> None:
    a, b = Reconciler("A"), Reconciler("B")
    ta, _ = a.incremental([fill(1), fill(2), fill(2), fill(2, "sell")], 0, 0)
    tb, _ = b.incremental([fill(7, qty=3)], 0, 0)
    cursor = Cursor()
    cursor.advance([ta[0], tb[0], *ta[1:]])
    assert cursor.symbols["A"].ts_ns == 2
    assert cursor.symbols["A"].counts == {("buy", 10, 1): 2, ("sell", 10, 1): 1}
    assert cursor.symbols["B"].counts == {("buy", 10, 3): 1}
    more, _ = a.incremental([fill(2)], 0, 0)
    cursor.advance(more)
    assert cursor.symbols["A"].counts[("buy", 10, 1)] == 3
    assert Cursor.from_json(cursor.to_json()) == cursor


@pytest.mark.parametrize(
    "data",
    [
        {"version": 2, "symbols": {}},
        {"version": 1, "symbols": {"A": {"ts_ns": 1}}},
        {"version": 1, "symbols": {"A": {"ts_ns": 1, "fills": [["buy", "1e3", "1", 1]]}}},
    ],
)
def test_a_malformed_cursor_is_refused_with_a_reason(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"cursor|version"):
        Cursor.from_json(data)


def test_merge_takes_the_newer_position_of_each_symbol() -> None:
    old, new = Cursor(), Cursor()
    a, b = Reconciler("A"), Reconciler("B")
    first, _ = a.incremental([fill(1), fill(2)], 0, 0)
    old.advance(first)
    later, _ = a.incremental([fill(2), fill(3)], 0, 0)
    new.advance(first + later)
    only_b, _ = b.incremental([fill(9)], 0, 0)
    old.advance(only_b)
    merged = old.merge(new)
    assert merged.symbols["A"].ts_ns == 3
    assert merged.symbols["B"].ts_ns == 9
    assert new.merge(old) == merged
    same_ns, _ = Reconciler("A").incremental([fill(3), fill(3)], 0, 0)
    wider = Cursor()
    wider.advance(same_ns)
    assert merged.merge(wider).symbols["A"].counts == {("buy", 10, 1): 2}
