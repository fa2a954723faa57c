"""The compiled hot path (``_hotpath.c``) against the pure Python it stands in for.

Each compiled function must give exactly what the Python gives, or None (the Python then runs).
Every test here runs both on the same input and compares: frames as Phemex writes them and as it
never would (escapes, numbers beyond int64, floats, unknown keys, bad rows, rows out of order,
repeated keys), rows, trades and acknowledged batches.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradelake import cursor as cursor_module
from tradelake import hotpath, normalise, pack
from tradelake.adapters.firehose_sink import FirehoseSink
from tradelake.cursor import Cursor
from tradelake.feed import Feed, Output
from tradelake.markets import instrument
from tradelake.model import EARLIEST_NS, LATEST_NS, Gap, Trade
from tradelake.simulator import wire

T0 = 1_795_737_600_000_000_000  # 2026-11-27T00:00Z
SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")
INSTRUMENTS = {s: instrument(s) for s in SYMBOLS}
EXAMPLES = int(os.environ.get("TRADELAKE_EXAMPLES", "400"))
compiled = hotpath.compiled


@pytest.fixture(autouse=True)
def quiet(caplog: pytest.LogCaptureFixture) -> None:
    """The feed warns of every bad row and gap these tests make on purpose: thousands."""
    caplog.set_level(logging.ERROR, logger="tradelake")


def test_the_compiled_path_is_loaded() -> None:
    """``make`` builds it for this interpreter: without it every test below compares Python
    with itself, so its absence is a failure here, not a skip."""
    if os.environ.get("TRADELAKE_PURE_PYTHON"):
        pytest.skip("TRADELAKE_PURE_PYTHON is set: the compiled path is off on purpose")
    assert compiled is not None, "tradelake._hotpath is not built: run `make hotpath`"


@contextmanager
def pure_python() -> Iterator[None]:
    """Every module's compiled functions off (a Feed made inside has none either)."""
    saved = normalise._compiled, pack._compiled, cursor_module._compiled, hotpath.compiled
    normalise._compiled = pack._compiled = cursor_module._compiled = hotpath.compiled = None
    try:
        yield
    finally:
        normalise._compiled, pack._compiled, cursor_module._compiled, hotpath.compiled = saved


def both(run: Any, *args: Any) -> tuple[Any, Any]:
    """``run(*args)`` with the compiled path, then in pure Python."""
    fast = run(*args)
    with pure_python():
        slow = run(*args)
    return fast, slow


# --- frames ----------------------------------------------------------------------------------

SIDES = st.sampled_from(["Buy", "Sell"] * 9 + ["buy", "Hold", 1])


def _value(symbol: str) -> st.SearchStrategy[Any]:
    """A price or quantity as the symbol's market writes it, or as nobody should."""
    text = instrument(symbol).factors is None
    good = (
        st.sampled_from(["20700.3", "0.001", "1", "20699", ".5", "5.", "1.00000000000"])
        if text
        else st.integers(1, 10**9)
    )
    bad = st.sampled_from(
        ["-1", "1e3", "0", "", ".", "1.2.3", "12345678901234567890", "0.00000000001", "½"]
        if text
        else [0, -5, 2**62, 2**63, 10**30, 1.5, "7", True, None]
    )
    return st.one_of(*[good] * 15, bad)


@st.composite
def row(draw: Any, symbol: str, ts: int) -> list[Any]:
    values = [ts, draw(SIDES), draw(_value(symbol)), draw(_value(symbol))]
    shape = draw(st.sampled_from(["ok"] * 60 + ["short", "long", "tuple_ts", "far", "old"]))
    if shape == "short":
        values = values[:3]
    elif shape == "long":
        values.append("extra")
    elif shape == "tuple_ts":
        values[0] = str(ts)
    elif shape == "far":
        values[0] = ts + 10**12 * 3600
    elif shape == "old":
        values[0] = EARLIEST_NS - 1
    return values


@st.composite
def frame(draw: Any, clock: list[int]) -> tuple[str | bytes, int]:
    """One incremental (mostly) of one symbol, in a form Phemex writes or a strange one."""
    symbol = draw(st.sampled_from(SYMBOLS))
    inst = INSTRUMENTS[symbol]
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        clock[0] += draw(st.sampled_from([0, 0, 1, 1000, 1000, 1000, 1000, -1000]))  # ties, back
        rows.append(draw(row(symbol, clock[0])))
    key = (
        inst.rows_key if draw(st.integers(0, 29)) else ("trades_p", "trades")[inst.factors is None]
    )
    fields: list[tuple[str, Any]] = [
        ("sequence", draw(st.sampled_from([7] * 20 + [0, -1, 2**63 - 1, 2**63, 1.0]))),
        ("symbol", draw(st.sampled_from([symbol] * 20 + ["ETHUSD", "BTC\\u0055SD"]))),
        (key, rows),
        ("type", draw(st.sampled_from(["incremental"] * 20 + ["snapshot", "Incremental"]))),
    ]
    if not draw(st.integers(0, 5)):
        fields.insert(
            draw(st.integers(0, 4)), ("dts", draw(st.sampled_from([1, "x", [1.5e3], {}])))
        )
    if not draw(st.integers(0, 9)):
        fields = draw(st.permutations(fields))
    if not draw(st.integers(0, 19)):
        fields.append(draw(st.sampled_from(fields)))  # a key twice
    sep = draw(st.sampled_from([",", ",", ", ", ",\n"]))
    parts = []
    for name, value in fields:
        text = json.dumps(value, separators=(sep, ":"))
        if name == "symbol" and "\\u" in value:
            text = f'"{value}"'  # the escape as Phemex could write it, decoding to BTCUSD
        parts.append(f'"{name}":{text}')
    text = "{" + sep.join(parts) + "}"
    recv_ns = clock[0] + 2_000_000
    return (text.encode() if draw(st.booleans()) else text), recv_ns


def session(frames: list[tuple[str | bytes, int]]) -> tuple[list[Output], Feed]:
    """A feed's outputs for one connection: subscribes answered, a snapshot each, the frames."""
    feed = Feed(INSTRUMENTS, Cursor())
    requests = feed.connect(0.0)
    outs = [
        feed.receive(f'{{"id":{json.loads(r)["id"]},"error":null,"result":{{}}}}', T0)
        for r in requests
    ]
    for symbol, inst in INSTRUMENTS.items():
        rows = wire.encode_rows(inst, [normalise.fills(inst, [[T0, "Buy", *ONE_OF[symbol]]])[0][0]])
        outs.append(feed.receive(wire.trades_message(inst, rows, "snapshot", 1), T0 + 1))
    outs += [feed.receive(text, recv_ns) for text, recv_ns in frames]
    return outs, feed


def produced(out: Output) -> tuple[list[Trade], list[Gap], list[str]]:
    """What a frame produced, whatever sequence type holds it."""
    return list(out.trades), list(out.gaps), list(out.requests)


ONE_OF = {"BTCUSD": [10_000, 1], "BTCUSDT": ["1", "1"], "sBTCUSDT": [100, 100]}


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_feed_takes_every_frame_as_the_python_does(data: Any) -> None:
    clock = [T0]
    frames = [data.draw(frame(clock)) for _ in range(data.draw(st.integers(1, 25)))]
    (fast, fast_feed), (slow, slow_feed) = both(session, frames)
    for got, want in zip(fast, slow, strict=True):
        assert produced(got) == produced(want)
        if got.lines is not None:  # the lines the compiled path wrote are the trades' own
            assert got.lines.decode() == "".join(pack.trade_line(t) for t in got.trades)
    assert fast_feed.stats == slow_feed.stats
    for symbol in SYMBOLS:
        got, want = fast_feed._lanes[symbol].reconciler, slow_feed._lanes[symbol].reconciler
        assert (got.ts_ns, got.counts, got.covered, got.duplicates) == (
            want.ts_ns,
            want.counts,
            want.covered,
            want.duplicates,
        )


def test_a_long_plain_session_is_the_pythons_and_the_compiled_paths() -> None:
    """Hypothesis reaches for the odd frame; a capture mostly sees plain ones. Thousands of those
    (ties in a nanosecond, repeated fills, every market), and both feeds agree on all of it."""
    rng = random.Random(10)
    ts = T0 + 10**6
    frames = []
    for seq in range(3000):
        symbol = rng.choice(SYMBOLS)
        inst, rows = INSTRUMENTS[symbol], []
        for _ in range(rng.randint(1, 4)):
            ts += rng.choice([0, 1, 1000, 10**6])
            price = rng.choice([99_990, 100_000, 100_005])
            values = [str(price / 10), "0.5"] if inst.factors is None else [price, 5]
            rows.append([ts, rng.choice(["Buy", "Sell"]), *values])
        fields = {"sequence": seq, "symbol": symbol, inst.rows_key: rows, "type": "incremental"}
        frames.append((json.dumps(fields, separators=(",", ":")), ts + 10**6))
    (fast, fast_feed), (slow, slow_feed) = both(session, frames)
    assert list(map(produced, fast)) == list(map(produced, slow))
    assert fast_feed.stats == slow_feed.stats
    assert sum(out.lines is not None for out in fast) == len(frames)  # all of them, compiled
    assert sum(len(out.trades) for out in fast[-len(frames) :]) > 2 * len(frames)


def test_plain_live_frames_take_the_compiled_path() -> None:
    """The frames Phemex sends (the fixtures' shape) are the compiled path's, lines and all."""
    frames = []
    for symbol, inst in INSTRUMENTS.items():
        fills = normalise.fills(inst, [[T0 + 10**9, "Sell", *ONE_OF[symbol]]] * 3)[0]
        frames.append(
            (
                wire.trades_message(inst, wire.encode_rows(inst, fills), "incremental", 9),
                T0 + 2 * 10**9,
            )
        )
    outs, _ = session(frames)
    taken = outs[-3:]
    assert all(out.lines is not None for out in taken)
    assert [[t.k for t in out.trades] for out in taken] == [[0, 1, 2]] * 3  # one ns, same fill
    assert not any(gc.is_tracked(t) for out in taken for t in out.trades)  # see record()


# --- rows, lines, records, the cursor ------------------------------------------------------------


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.sampled_from(SYMBOLS), st.data())
def test_fills_are_the_pythons(symbol: str, data: Any) -> None:
    rows = [data.draw(row(symbol, T0 + data.draw(st.integers(-3, 3)))) for _ in range(6)]
    if data.draw(st.booleans()):
        rows.reverse()
    window = (T0 - data.draw(st.integers(0, 2)), T0 + data.draw(st.integers(0, 2)))
    fast, slow = both(normalise.fills, INSTRUMENTS[symbol], rows, window)
    assert fast == slow
    assert [type(f) for f in fast[0]] == [type(f) for f in slow[0]]


TEXT = st.sampled_from(["BTCUSD", "sBTCUSDT", "é", 'a"b', "a\\b", "\x7f", "x" * 40])
INTS = st.one_of(st.integers(-(2**64), 2**64), st.sampled_from([0, 1, 10**6, 2**63 - 1]))
TRADES = st.lists(
    st.builds(Trade, TEXT, st.integers(0, LATEST_NS), TEXT, INTS, INTS, INTS, INTS, INTS, TEXT),
    max_size=12,
)


@settings(max_examples=EXAMPLES, deadline=None)
@given(TRADES, st.integers(1, 4), st.integers(150, 2000))
def test_records_are_the_pythons(trades: list[Trade], max_trades: int, max_bytes: int) -> None:
    def records(*args: Any) -> Any:
        try:
            return pack.pack(*args)
        except ValueError as exc:
            return str(exc)

    fast, slow = both(records, trades, max_trades, max_bytes)
    assert fast == slow


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(SYMBOLS), st.integers(0, 3), st.sampled_from(["buy", "sell"])),
        max_size=30,
    )
)
def test_settling_a_batch_is_the_pythons(shape: list[tuple[str, int, str]]) -> None:
    trades = [
        Trade(symbol, T0 + step, side, 10**10, 10**10, k % 2, T0, 1, "incremental")
        for k, (symbol, step, side) in enumerate(shape)
    ]

    def advance() -> tuple[Any, Any]:
        cursor = Cursor()
        written = cursor.advance(trades)
        return dict(written), cursor.to_json()

    fast, slow = both(advance)
    assert fast == slow


def test_a_sink_packs_the_lines_it_was_given_and_writes_the_missing_ones() -> None:
    """Adds with lines (live frames) and without (a snapshot) pack as all-Python would."""
    clock = [T0]
    frames = [frame_of(clock, symbol) for symbol in SYMBOLS * 3]
    outs, _ = session(frames)

    def records() -> list[bytes]:
        sent: list[bytes] = []

        class Firehose:
            def put_record_batch(self, **kwargs: Any) -> dict[str, Any]:
                sent.extend(r["Data"] for r in kwargs["Records"])
                n = len(kwargs["Records"])
                return {"FailedPutCount": 0, "RequestResponses": [{"RecordId": "r"}] * n}

        sink = FirehoseSink(Firehose(), "s", clock=lambda: 0)
        for out in outs:
            sink.add(out.trades, out.lines)
        assert len(sink.flush()) == sum(len(out.trades) for out in outs)
        return sent

    assert any(out.lines is None and out.trades for out in outs)  # the snapshots
    assert any(out.lines is not None for out in outs)
    fast, slow = both(records)
    assert fast == slow
    assert fast


def frame_of(clock: list[int], symbol: str) -> tuple[str, int]:
    inst = INSTRUMENTS[symbol]
    clock[0] += 10**6
    fills = normalise.fills(inst, [[clock[0], "Buy", *ONE_OF[symbol]]])[0]
    return wire.trades_message(inst, wire.encode_rows(inst, fills), "incremental", 5), clock[0]


def test_trades_made_by_the_constructor_are_the_same() -> None:
    """From CPython 3.14 trades are made by tuple's constructor, not its allocator: both are
    equal, hash alike and mix in one dict."""
    assert compiled is not None
    clock = [T0]
    frames = [frame_of(clock, symbol) for symbol in SYMBOLS * 2]
    allocated, _ = session(frames)
    hotpath.bind(compiled, allocate=False)
    try:
        constructed, _ = session(frames)
    finally:
        hotpath.bind(compiled)
    assert constructed == allocated
    for a, b in zip(allocated, constructed, strict=True):
        assert len({*a.trades, *b.trades}) == len(a.trades)
