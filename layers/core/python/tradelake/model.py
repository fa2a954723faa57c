"""The trade as it flows through the core, in exact fixed point.

Prices and quantities are integers in units of 10^-10 (``FIXED_SCALE``): every Phemex scale
(10^-4 for inverse prices, 10^-8 for spot) and every ``trades_p`` decimal string with at most ten
fractional digits maps onto them exactly, they compare and hash fast on the hot path, and they are
exactly the unscaled values of the lake's ``decimal(28,10)`` columns. No float is ever involved.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, NamedTuple

FIXED_SCALE: Final = 10
"""Fractional digits of every price and quantity (the lake's decimal(28,10))."""
FIXED_ONE: Final = 10**FIXED_SCALE
FIXED_LIMIT: Final = 10**28
"""Exclusive bound of a decimal(28,10) unscaled value: larger is an error, never a rounding."""

EARLIEST_NS: Final = 946_684_800 * 10**9
"""2000-01-01T00:00Z: an older trade time is a unit mistake (seconds or ms), not a trade."""
LATEST_NS: Final = 4_102_444_800 * 10**9
"""2100-01-01T00:00Z: far inside int64 nanoseconds, so no trade time can overflow a writer."""

_PLAIN_DECIMAL = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")

BUY = "buy"
SELL = "sell"

SNAPSHOT = "snapshot"
INCREMENTAL = "incremental"


class Fill(NamedTuple):
    """One row of a trade message after scaling, before it has an identity."""

    ts_ns: int
    side: str
    price: int
    qty: int


class Trade(NamedTuple):
    """One trade with its identity: ``k`` counts identical fills earlier in the same nanosecond."""

    symbol: str
    ts_ns: int
    side: str
    price: int
    qty: int
    k: int
    recv_ns: int
    seq: int
    source: str


class Gap(NamedTuple):
    """An inclusive event-time interval in which trades of ``symbol`` may be missing."""

    symbol: str
    from_ts_ns: int
    to_ts_ns: int
    detected_ns: int
    reason: str


@lru_cache(maxsize=1 << 16)
def format_fixed(value: int) -> str:
    """Render a fixed-point integer as the shortest exact decimal string (``32991.5``, ``40``).

    Cached: prices and quantities repeat a lot, and this runs twice per trade for ``trade_key``.
    """
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), FIXED_ONE)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:010d}".rstrip("0")


def parse_fixed(text: str) -> int:
    """Parse a plain decimal string (``"20700.3"``, ``"-0.001"``) into fixed point, exactly.

    Raises ValueError for anything that is not a plain decimal or that needs more than ten
    fractional digits: such a value cannot be stored without rounding. Unsigned ASCII text, what
    every ``trades_p`` row carries, takes a shortcut of one ``int`` (this runs twice per row).
    """
    whole, _, frac = text.partition(".")
    if text.isascii() and (whole.isdigit() or not whole) and (frac.isdigit() or not frac):
        if len(frac) > FIXED_SCALE:
            frac = frac.rstrip("0")
            if len(frac) > FIXED_SCALE:
                raise ValueError(f"{text!r} has more than {FIXED_SCALE} fractional digits")
        if whole or frac:
            return int(whole + frac.ljust(FIXED_SCALE, "0"))
    match = _PLAIN_DECIMAL.fullmatch(text)
    if match is None or not (match.group(2) or match.group(3)):
        # the pattern's parts are all optional: "", ".", "-" or "+." match it without a digit
        raise ValueError(f"not a plain decimal: {text!r}")
    sign, whole, frac = match.group(1, 2, 3)
    frac = (frac or "").rstrip("0")
    if len(frac) > FIXED_SCALE:
        raise ValueError(f"{text!r} has more than {FIXED_SCALE} fractional digits")
    value = int(whole or "0") * FIXED_ONE + int(frac.ljust(FIXED_SCALE, "0"))
    return -value if sign == "-" else value


def trade_key(trade: Trade) -> str:
    """The trade's deterministic id, whichever message (snapshot or incremental) carried it.

    Built from the identity ``(symbol, ts_ns, side, price, qty, k)`` of ARCHITECTURE.md §4, with
    canonical decimal strings, so it is readable and stable across scales and encodings.
    """
    return (
        f"{trade.symbol}:{trade.ts_ns}:{trade.side}:"
        f"{format_fixed(trade.price)}:{format_fixed(trade.qty)}:{trade.k}"
    )
