"""The small interfaces through which the core talks to the world (ARCHITECTURE.md §2).

Each has an AWS adapter and a local adapter in ``tradelake.adapters``; tests use in-memory fakes.
The core imports only these protocols, never boto3, pyarrow or duckdb.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tradelake.cursor import Cursor
from tradelake.model import Gap, Trade


class TradeSink(Protocol):
    """Buffers trades and writes them durably in batches, as Firehose would.

    ``flush`` returns the trades it has durably written, in the order they were added; the
    capture advances its cursor by exactly those, so the cursor is never ahead of the lake.
    A sink that cannot write raises; what it did not acknowledge is not in the cursor.
    """

    def add(self, trades: Sequence[Trade], lines: bytes | None = None) -> None:
        """Buffer ``trades``; ``lines`` are their JSON lines when already written (a sink that
        writes another format ignores them)."""
        ...

    def due(self, now_ns: int) -> bool:
        """Whether a buffer limit (count, bytes or age) says it is time to flush."""
        ...

    def flush(self) -> Sequence[Trade]: ...


class CursorStore(Protocol):
    """Where the cursor survives between runs: a file in the lake, or S3 plus the SFN payload."""

    def load(self) -> Cursor: ...

    def save(self, cursor: Cursor) -> None: ...


class GapLedger(Protocol):
    """Where declared gaps go, so that the lake always knows where it is incomplete."""

    def record(self, gaps: Sequence[Gap]) -> None: ...
