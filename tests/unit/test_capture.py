"""The capture loop against scripted connections and in-memory ports, on a fake clock."""

from __future__ import annotations

import random
from dataclasses import replace

import orjson
import pytest

from fakes import FakeClock, MemoryCursorStore, MemoryGapLedger, MemorySink, ScriptedConnection
from tradelake.capture import (
    Capture,
    CaptureConfig,
    Connect,
    Connection,
    ConnectionLost,
    SourceUnreachable,
    SubscriptionRejected,
)
from tradelake.cursor import Cursor
from tradelake.feed import FeedConfig

CONFIG = CaptureConfig(
    url="ws://test", symbols=("BTCUSD", "BTCUSDT"), ping_interval_s=5, dead_after_s=15
)
T0 = 1_795_737_600_000_000_000  # 2026-11-27T00:00Z


def trades(symbol: str, kind: str, *rows: list[object]) -> str:
    """A trade message; row timestamps are nanoseconds after ``T0``."""
    key = "trades_p" if symbol.endswith("USDT") else "trades"
    rows = tuple([T0 + row[0], *row[1:]] for row in rows)  # type: ignore[operator]
    return orjson.dumps({"symbol": symbol, "type": kind, "sequence": 1, key: rows}).decode()


def refuse(*methods: str):  # type: ignore[no-untyped-def]
    """Answers each new request of ``methods`` with error 6001, once; silence otherwise."""
    answered: set[int] = set()

    def answer(sent: list[str]) -> str | None:
        for request in map(orjson.loads, sent):
            if request["method"] in methods and request["id"] not in answered:
                answered.add(request["id"])
                error = {"code": 6001, "message": "invalid argument"}
                return orjson.dumps({"id": request["id"], "error": error, "result": None}).decode()
        return None

    return answer


class Harness:
    def __init__(self, *scripts: list[object], sink: MemorySink | None = None) -> None:
        self.clock = FakeClock()
        self.connections = [ScriptedConnection(s, self.clock) for s in scripts]  # type: ignore[arg-type]
        self.opened: list[ScriptedConnection] = []
        self.sink = sink or MemorySink()
        self.store = MemoryCursorStore()
        self.ledger = MemoryGapLedger()

    def connect(self, url: str, timeout_s: float) -> ScriptedConnection:
        if not self.connections:
            self.clock.now += 1e6  # the script is over: let any deadline pass
            raise ConnectionRefusedError("no more scripted connections")
        self.opened.append(self.connections.pop(0))
        return self.opened[-1]

    def capture(self, config: CaptureConfig = CONFIG) -> Capture:
        return Capture(
            config,
            sink=self.sink,
            cursor_store=self.store,
            gap_ledger=self.ledger,
            connect=self.connect,
            clock=self.clock,
            wall_ns=lambda: T0 + round(self.clock.now * 1e9),
        )


def test_subscribes_by_market_type_pings_and_treats_silence_as_death() -> None:
    h = Harness(
        [
            trades("BTCUSD", "snapshot", [20, "Buy", 10000, 1], [10, "Sell", 10000, 2]),
            trades("BTCUSDT", "snapshot"),  # empty: asked for again at once
        ],
        [trades("BTCUSDT", "snapshot", [30, "Buy", "1.5", "0.1"])],
    )
    capture = h.capture()
    capture.run(deadline=h.clock.now + 25)
    first, second = h.opened
    methods = [orjson.loads(s)["method"] for s in first.sent]
    assert methods[:4] == [
        "trade.subscribe",
        "trade_p.subscribe",
        "trade_p.unsubscribe",
        "trade_p.subscribe",
    ]
    assert methods.count("server.ping") == 2, "pings at 5 and 10 s; at 15 s it is dead"
    assert capture.stats.dead_connections == 1, "15 s without a frame is a dead connection"
    assert [orjson.loads(s)["method"] for s in second.sent][:2] == methods[:2], "resubscribed"
    assert first.closed
    assert second.closed
    assert [t.ts_ns - T0 for t in h.sink.written] == [10, 20, 30]
    assert h.store.saved.symbols["BTCUSDT"].ts_ns == T0 + 30


def test_the_cursor_never_runs_ahead_of_what_the_sink_acknowledged() -> None:
    sink = MemorySink(every=2)
    h = Harness(
        [
            trades("BTCUSD", "snapshot", [2, "Buy", 10000, 1], [1, "Buy", 10000, 1]),
            trades("BTCUSD", "incremental", [3, "Buy", 10000, 1]),
        ],
        sink=sink,
    )
    sink_error = OSError("disk full")

    def fail_later(sent: list[str]) -> None:
        sink.fail = sink_error

    h.connections[0].script.append(fail_later)
    with pytest.raises(OSError, match="disk full"):
        h.capture().run(deadline=h.clock.now + 3)
    assert [t.ts_ns - T0 for t in sink.written] == [1, 2]
    assert h.store.saved.symbols["BTCUSD"].ts_ns == T0 + 2, "trade 3 was never acknowledged"


REFUSE_3 = CaptureConfig(
    url="ws://t", symbols=("BTCUSD", "BTCUSDT"), feed=FeedConfig(max_subscribe_errors=3)
)


def test_a_refused_symbol_is_retried_then_given_up_while_the_others_go_on() -> None:
    h = Harness(
        [
            trades("BTCUSD", "snapshot", [1, "Buy", 10000, 1]),
            *[refuse("trade_p.subscribe")] * 30,  # retries come after 0.5, 1 s at most
            trades("BTCUSD", "incremental", [2, "Buy", 10000, 1]),
        ]
    )
    capture = h.capture(REFUSE_3)
    capture.run(deadline=h.clock.now + 100)
    sent = [orjson.loads(s)["method"] for s in h.opened[0].sent]
    assert sent.count("trade_p.subscribe") == 3
    assert capture.stats.rejected == {
        "BTCUSDT": "Phemex rejected trade_p.subscribe for BTCUSDT: 6001 invalid argument "
        "(3 times in a row)"
    }
    assert [t.ts_ns - T0 for t in h.sink.written] == [1, 2]


def test_when_every_symbol_is_refused_the_capture_stops_with_their_reasons() -> None:
    h = Harness([refuse("trade.subscribe", "trade_p.subscribe")] * 20)
    with pytest.raises(SubscriptionRejected, match=r"trade\.subscribe for BTCUSD: 6001.*BTCUSDT"):
        h.capture(REFUSE_3).run(deadline=h.clock.now + 100)


def test_an_error_to_a_ping_and_unknown_frames_are_counted_not_fatal() -> None:
    h = Harness(
        [
            '{"id":999,"error":{"code":1,"message":"x"},"result":null}',
            '{"hello":"world"}',
            "garbage",
            trades("ETHUSD", "incremental", [1, "Buy", 1, 1]),  # not subscribed
            trades("BTCUSD", "snapshot", [2, "Bid", 1, 1], [1, "Buy", 10000, 1]),
        ]
    )
    capture = h.capture()
    capture.run(deadline=h.clock.now + 1)
    stats = capture.stats
    assert (stats.subscribe_errors, stats.unknown_frames, stats.malformed_frames) == (1, 2, 1)
    assert stats.symbols["BTCUSD"].bad_rows == 1
    assert [t.ts_ns - T0 for t in h.sink.written] == [1]


def test_ctrl_c_flushes_and_saves_the_cursor() -> None:
    h = Harness([trades("BTCUSD", "snapshot", [7, "Buy", 10000, 1]), KeyboardInterrupt()])
    cursor = h.capture().run()
    assert [t.ts_ns - T0 for t in h.sink.written] == [7]
    assert h.store.saved == cursor
    assert cursor.symbols["BTCUSD"].ts_ns == T0 + 7


def test_resumes_from_the_stored_cursor_and_declares_what_the_snapshot_cannot_cover() -> None:
    h = Harness([trades("BTCUSD", "snapshot", [50, "Buy", 10000, 1], [40, "Buy", 10000, 1])])
    h.store.saved = Cursor()
    h.store.saved.advance([])
    first = Harness([trades("BTCUSD", "snapshot", [5, "Buy", 10000, 1])])
    first.capture().run(deadline=first.clock.now + 1)
    h.store.saved = first.store.saved
    capture = h.capture()
    capture.run(deadline=h.clock.now + 1)
    assert [(g.from_ts_ns - T0, g.to_ts_ns - T0, g.reason) for g in h.ledger.gaps] == [
        (5, 40, "snapshot_short")
    ]
    assert capture.stats.gaps == 1


def test_lost_connections_reconnect_and_a_first_failure_is_unreachable() -> None:
    h = Harness([ConnectionLost("reset")], [ConnectionLost("reset")])
    capture = h.capture()
    capture.run(deadline=h.clock.now + 100)
    assert (capture.stats.connections, capture.stats.reconnects) == (2, 1)
    with pytest.raises(SourceUnreachable, match="tradelake demo"):
        Harness().capture().run(deadline=h.clock.now + 100)


class FakeSleep(list[float]):
    """The capture's ``sleep``: records each backoff and lets it pass on the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.clock.now += seconds


def failing_first(h: Harness, failures: int | None) -> Connect:
    """Refuses the first ``failures`` connects (None: every one), then plays ``h``'s scripts."""
    refused = [0]

    def connect(url: str, timeout_s: float) -> Connection:
        if failures is None or refused[0] < failures:
            refused[0] += 1
            raise ConnectionRefusedError(111, "Connection refused")
        return h.connect(url, timeout_s)

    return connect


def patient(h: Harness, failures: int | None) -> tuple[Capture, FakeSleep]:
    sleep = FakeSleep(h.clock)
    capture = Capture(
        replace(CONFIG, fail_fast=False),
        sink=h.sink,
        cursor_store=h.store,
        gap_ledger=h.ledger,
        connect=failing_first(h, failures),
        clock=h.clock,
        wall_ns=lambda: T0 + round(h.clock.now * 1e9),
        rng=random.Random(3),
        sleep=sleep,
    )
    return capture, sleep


def test_fail_fast_is_the_default_and_counts_the_failed_connect() -> None:
    assert CaptureConfig().fail_fast is True
    h = Harness()
    capture = h.capture()
    with pytest.raises(SourceUnreachable, match="cannot reach ws://test"):
        capture.run(deadline=h.clock.now + 100)
    assert capture.stats.connect_failures == 1


def test_without_fail_fast_a_failed_first_connect_is_retried_with_backoff() -> None:
    h = Harness([trades("BTCUSD", "snapshot", [1, "Buy", 10000, 1])])
    capture, sleep = patient(h, failures=2)
    cursor = capture.run(deadline=h.clock.now + 10)
    stats = capture.stats
    assert (stats.connect_failures, stats.connections, stats.reconnects) == (2, 1, 0)
    assert len(sleep) >= 2
    assert 0 <= sleep[0] <= CONFIG.backoff_initial_s
    assert 0 <= sleep[1] <= 2 * CONFIG.backoff_initial_s, "exponential: the cap doubles"
    assert [t.ts_ns - T0 for t in h.sink.written] == [1]
    assert cursor.symbols["BTCUSD"].ts_ns == T0 + 1


def test_without_fail_fast_an_unreachable_source_is_retried_until_the_deadline() -> None:
    h = Harness()
    h.store.saved = Cursor()
    before = h.store.saved.to_json()
    capture, sleep = patient(h, failures=None)
    start = h.clock.now
    cursor = capture.run(deadline=start + 600)  # no exception
    assert h.clock.now == pytest.approx(start + 600), "it waited right up to the deadline"
    assert capture.stats.connections == 0
    assert capture.stats.connect_failures == len(sleep) > 8
    caps = [min(CONFIG.backoff_max_s, CONFIG.backoff_initial_s * 2**i) for i in range(len(sleep))]
    assert all(0 <= s <= cap for s, cap in zip(sleep, caps, strict=True)), "capped, jittered"
    assert max(sleep) > CONFIG.backoff_initial_s * 8, "the backoff grew"
    assert cursor.to_json() == before, "the cursor is where it was"
    assert h.sink.written == []
