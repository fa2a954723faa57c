"""Wire rows to exact fixed-point fills (see ``tradelake.model``), oldest first.

Inverse and spot rows carry scaled integers (``priceEp``), perpetual rows carry decimal strings;
both become integers in units of 10^-10 by integer arithmetic only. The row's shape must be its
market's: an integer under ``trades_p`` or a string under ``trades`` would be scaled 10^4 or more
times wrong, so it is a bad row, as is a price or quantity that is not positive, and a timestamp
outside the caller's window (a far-future one would move the cursor past every real trade to
come). A bad row is counted and skipped: its neighbours in the same message still count.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from operator import itemgetter
from typing import Any, Final

from tradelake import hotpath
from tradelake.markets import Instrument
from tradelake.model import BUY, EARLIEST_NS, FIXED_LIMIT, LATEST_NS, SELL, Fill, parse_fixed

SIDES = {"Buy": BUY, "Sell": SELL}
_BY_TS = itemgetter(0)
_ROW_ERRORS = (IndexError, KeyError, TypeError, ValueError)

ANY_TIME: Final = (EARLIEST_NS, LATEST_NS)

_compiled = hotpath.compiled
"""Takes rows that are all good (most messages); the loops below are the reference."""

_parse_fixed = lru_cache(maxsize=4096)(parse_fixed)
"""``parse_fixed`` for ``trades_p`` values, cached: two per row, and prices and sizes repeat (a
price moves by ticks). A text that is not a plain decimal raises every time, uncached; one that
is holds at most ~4,300 digits (``int``'s limit), so a hostile stream pins at most ~18 MB."""


def fills(
    instrument: Instrument, rows: Iterable[Any], window: tuple[int, int] = ANY_TIME
) -> tuple[list[Fill], int]:
    """Convert rows to fills sorted by time (snapshots arrive newest first); count bad rows.

    ``window`` is the inclusive range of acceptable timestamps; it never reaches outside
    ``ANY_TIME``. The sort is stable and, on the already ordered input Phemex sends, a single
    linear pass. A row longer than four values is read by its first four (a field Phemex adds
    is ignored, as in the envelope). This runs for every row: fills are made with
    ``tuple.__new__``, which skips the Python-level ``Fill.__new__``.
    """
    lo, hi = max(window[0], EARLIEST_NS), min(window[1], LATEST_NS)
    if _compiled is not None:
        done = _compiled.fills(rows, instrument.factors, lo, hi)
        if done is not None:
            return done, 0
    out: list[Fill] = []
    append, new, sides, limit = out.append, tuple.__new__, SIDES, FIXED_LIMIT
    bad = 0
    if instrument.price_scale is None:
        fixed = _parse_fixed
        for row in rows:
            try:
                try:
                    ts, side, price_text, qty_text = row
                except ValueError:
                    ts, side, price_text, qty_text = row[0], row[1], row[2], row[3]
                if type(ts) is not int or type(price_text) is not str or type(qty_text) is not str:
                    raise TypeError(row)  # a JSON number here has lost exactness or its scale
                price, qty = fixed(price_text), fixed(qty_text)
                if not (lo <= ts <= hi and 0 < price < limit and 0 < qty < limit):
                    raise ValueError(row)
                append(new(Fill, (ts, sides[side], price, qty)))
            except _ROW_ERRORS:
                bad += 1
    else:
        price_factor, qty_factor = instrument.price_factor, instrument.qty_factor
        for row in rows:
            try:
                try:
                    ts, side, price, qty = row
                except ValueError:
                    ts, side, price, qty = row[0], row[1], row[2], row[3]
                if type(ts) is not int or type(price) is not int or type(qty) is not int:
                    raise TypeError(row)
                price *= price_factor
                qty *= qty_factor
                if not (lo <= ts <= hi and 0 < price < limit and 0 < qty < limit):
                    raise ValueError(row)
                append(new(Fill, (ts, sides[side], price, qty)))
            except _ROW_ERRORS:
                bad += 1
    if len(out) > 1:
        out.sort(key=_BY_TS)
    return out, bad
