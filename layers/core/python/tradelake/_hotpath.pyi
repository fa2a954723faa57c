"""Types of the compiled hot path (``_hotpath.c``); ``tradelake.hotpath`` explains it."""

from collections.abc import Mapping, Sequence
from typing import Any

from tradelake.model import Fill, Trade

def bind(
    fill: type[Fill],
    trade: type[Trade],
    buy: str,
    sell: str,
    incremental: str,
    earliest_ns: int,
    latest_ns: int,
    allocate: bool,
    /,
) -> None: ...
def fills(
    rows: object, factors: tuple[int, int] | None, lo: int, hi: int, /
) -> list[Fill] | None: ...
def live_frame(
    frame: str | bytes,
    lanes: Mapping[str, Any],
    recv_ns: int,
    max_age_ns: int,
    max_lead_ns: int,
    /,
) -> tuple[Any, list[Trade], bytes, int] | None: ...
def lines(trades: Sequence[Trade], /) -> bytes | None: ...
def records(lines: bytes, max_trades: int, max_bytes: int, /) -> list[tuple[bytes, int]] | None: ...
def settle(
    acknowledged: Sequence[Trade], /
) -> tuple[dict[str, int], dict[str, tuple[int, dict[tuple[str, int, int], int]]]] | None: ...
