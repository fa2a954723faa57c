"""Wire rows to exact fixed-point fills (see ``tradelake.model``), oldest first.

Inverse and spot rows carry scaled integers (``priceEp``), perpetual rows carry decimal strings;
both become integers in units of 10^-10 by integer arithmetic only. A row that does not parse is
counted and skipped: its neighbours in the same message still count.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from tradelake.markets import Instrument
from tradelake.model import BUY, FIXED_LIMIT, SELL, Fill, parse_fixed

SIDES = {"Buy": BUY, "Sell": SELL}
_BY_TS = itemgetter(0)
_ROW_ERRORS = (IndexError, KeyError, TypeError, ValueError)
_EXACT = (str, int)


def fills(instrument: Instrument, rows: Iterable[Any]) -> tuple[list[Fill], int]:
    """Convert rows to fills sorted by time (snapshots arrive newest first); count bad rows.

    The sort is stable and, on the already ordered input Phemex sends, a single linear pass.
    """
    out: list[Fill] = []
    bad = 0
    if instrument.price_scale is None:
        for row in rows:
            try:
                out.append(_decimal_row(row))
            except _ROW_ERRORS:
                bad += 1
    else:
        price_factor, qty_factor = instrument.price_factor, instrument.qty_factor
        for row in rows:
            try:
                ts, side, price, qty = row[0], SIDES[row[1]], row[2], row[3]
                if type(ts) is not int or type(price) is not int or type(qty) is not int:
                    raise TypeError(row)
                price *= price_factor
                qty *= qty_factor
                if not (ts > 0 and 0 <= price < FIXED_LIMIT and 0 < qty < FIXED_LIMIT):
                    raise ValueError(row)
                out.append(Fill(ts, side, price, qty))
            except _ROW_ERRORS:
                bad += 1
    out.sort(key=_BY_TS)
    return out, bad


def _decimal_row(row: Any) -> Fill:
    ts, side, price_text, qty_text = row[0], SIDES[row[1]], row[2], row[3]
    if type(ts) is not int or ts <= 0:
        raise TypeError(row)
    if type(price_text) not in _EXACT or type(qty_text) not in _EXACT:
        raise TypeError(row)  # a JSON float has already lost exactness
    price, qty = parse_fixed(str(price_text)), parse_fixed(str(qty_text))
    if not (0 <= price < FIXED_LIMIT and 0 < qty < FIXED_LIMIT):
        raise ValueError(row)
    return Fill(ts, side, price, qty)
