"""In-memory fakes of the core's ports: fakes over mocks, so tests assert on real behaviour."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tradelake.capture import ConnectionLost
from tradelake.cursor import Cursor
from tradelake.model import Gap, Trade
from tradelake.ports import TradeSink


@dataclass
class MemorySink:
    """A TradeSink that flushes every ``every`` trades; ``fail`` makes the next flush raise."""

    every: int = 1_000_000
    buffer: list[Trade] = field(default_factory=list)
    written: list[Trade] = field(default_factory=list)
    fail: Exception | None = None

    def add(self, trades: Sequence[Trade], lines: bytes | None = None) -> None:
        self.buffer.extend(trades)

    def due(self, now_ns: int) -> bool:
        return len(self.buffer) >= self.every

    def flush(self) -> Sequence[Trade]:
        if self.fail is not None:
            raise self.fail
        done, self.buffer = self.buffer, []
        self.written += done
        return done


@dataclass
class MemoryCursorStore:
    saved: Cursor = field(default_factory=Cursor)
    saves: int = 0

    def load(self) -> Cursor:
        return self.saved.copy()

    def save(self, cursor: Cursor) -> None:
        self.saved = cursor.copy()
        self.saves += 1


@dataclass
class MemoryGapLedger:
    gaps: list[Gap] = field(default_factory=list)

    def record(self, gaps: Sequence[Gap]) -> None:
        self.gaps.extend(gaps)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Script = list[str | Callable[[list[str]], str | None] | BaseException | None]


class ScriptedConnection:
    """Plays a script: a frame, a function of what was sent so far, an exception, or silence.

    Silence (None, or the end of the script) lets the fake clock run out the receive timeout, so
    liveness logic runs in no wall time at all.
    """

    def __init__(self, script: Script, clock: FakeClock) -> None:
        self.script = list(script)
        self.clock = clock
        self.sent: list[str] = []
        self.closed = False

    def send(self, text: str) -> None:
        if self.closed:
            raise ConnectionLost("closed")
        self.sent.append(text)

    def recv(self, timeout_s: float) -> str | bytes | None:
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BaseException):
            raise step
        if callable(step):
            step = step(self.sent)
        if step is None:
            self.clock.now += timeout_s
        return step

    def close(self) -> None:
        self.closed = True


@dataclass
class SlowSink:
    """A slow consumer: wraps a real sink and sleeps ``pause_s`` before every ``every``-th flush.

    The capture is single-threaded, so while it sleeps nothing is read from the socket: frames
    pile up in the kernel buffers and the capture falls behind the market.
    """

    sink: TradeSink
    every: int = 5
    pause_s: float = 0.5
    flushes: int = 0
    pauses: int = 0

    def add(self, trades: Sequence[Trade], lines: bytes | None = None) -> None:
        self.sink.add(trades)

    def due(self, now_ns: int) -> bool:
        return self.sink.due(now_ns)

    def flush(self) -> Sequence[Trade]:
        self.flushes += 1
        if self.flushes % self.every == 0:
            self.pauses += 1
            time.sleep(self.pause_s)
        return self.sink.flush()
