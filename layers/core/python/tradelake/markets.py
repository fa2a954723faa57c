"""Which protocol a symbol speaks and how its integers scale (ARCHITECTURE.md §4).

Three market types share one websocket:

- inverse contracts (``BTCUSD``): ``trade.subscribe``, rows under ``trades``, integer ``priceEp``
  scaled by 10^4 and an integer contract quantity;
- USDT-margined perpetuals (``BTCUSDT``): ``trade_p.subscribe``, rows under ``trades_p``, real
  values as decimal strings;
- spot (``sBTCUSDT``): ``trade.subscribe``, rows under ``trades``, ``priceEp`` and quantity scaled
  by 10^8.

The market type and scales come from Phemex's products list (``GET /public/products``) when it
can be fetched; otherwise the symbol's shape decides (``market_of``) and ``FALLBACK_SCALES`` hold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tradelake.model import FIXED_SCALE

SYMBOL_PATTERN = re.compile(r"[a-z]?[A-Z0-9]{2,31}")
"""Phemex's symbol shape, matched whole (``fullmatch``): upper case and digits after at most one
lower-case market letter (``BTCUSD``, ``sBTCUSDT``, ``s1INCHUSDT``). The capture, the SQL
renderer and the partition catalog all take this one shape, so that the catalog never skips a
partition the capture wrote."""


class Market(StrEnum):
    INVERSE = "inverse"
    PERPETUAL = "perpetual"
    SPOT = "spot"


# (price scale, quantity scale) by market type; None means the values arrive as decimal strings.
FALLBACK_SCALES: Mapping[Market, tuple[int, int] | None] = {
    Market.INVERSE: (4, 0),
    Market.SPOT: (8, 8),
    Market.PERPETUAL: None,
}


class UnknownSymbolError(ValueError):
    """A symbol that is not of the shape Phemex uses."""


def market_of(symbol: str) -> Market:
    """The market type from the symbol's shape alone, when the products list is not at hand.

    ``s`` followed by an uppercase letter or a digit is spot (``sBTCUSDT``, ``s1INCHUSDT``);
    otherwise ``…USDT`` is a USDT perpetual and anything else an inverse contract.
    """
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise UnknownSymbolError(
            f"{symbol!r} is not a Phemex symbol: upper-case letters and digits after at most "
            "one lower-case market letter, e.g. BTCUSD, BTCUSDT or sBTCUSDT"
        )
    if symbol[0] == "s" and (symbol[1].isupper() or symbol[1].isdigit()):
        return Market.SPOT
    if symbol.endswith("USDT"):
        return Market.PERPETUAL
    return Market.INVERSE


@dataclass(frozen=True, slots=True)
class Instrument:
    """A symbol with its market type and the factors that turn its integers into fixed point."""

    symbol: str
    market: Market
    price_scale: int | None
    qty_scale: int | None
    price_factor: int = field(init=False, repr=False, compare=False)
    """Multiplier from a scaled integer price (``priceEp``) to fixed point."""
    qty_factor: int = field(init=False, repr=False, compare=False)
    factors: tuple[int, int] | None = field(init=False, repr=False, compare=False)
    """``(price_factor, qty_factor)`` of integer rows; None for decimal-text rows (``trades_p``)."""

    def __post_init__(self) -> None:
        # Read for every trade message: computed once (a frozen dataclass sets them this way).
        object.__setattr__(self, "price_factor", int(10 ** (FIXED_SCALE - (self.price_scale or 0))))
        object.__setattr__(self, "qty_factor", int(10 ** (FIXED_SCALE - (self.qty_scale or 0))))
        scaled = self.price_scale is not None
        factors = (self.price_factor, self.qty_factor) if scaled else None
        object.__setattr__(self, "factors", factors)

    @property
    def subscribe_method(self) -> str:
        return "trade_p.subscribe" if self.market is Market.PERPETUAL else "trade.subscribe"

    @property
    def unsubscribe_method(self) -> str:
        return "trade_p.unsubscribe" if self.market is Market.PERPETUAL else "trade.unsubscribe"

    @property
    def rows_key(self) -> str:
        return "trades_p" if self.market is Market.PERPETUAL else "trades"


Products = Mapping[str, Instrument]
"""Instruments by symbol, from the products list (``instruments_from_products``)."""


def instrument(symbol: str, products: Products | None = None) -> Instrument:
    """The instrument for ``symbol``: from the products list if it is there, else by its shape."""
    known = (products or {}).get(symbol)
    if known is not None:
        return known
    market = market_of(symbol)
    scales = FALLBACK_SCALES[market]
    if scales is None:
        return Instrument(symbol, market, None, None)
    return Instrument(symbol, market, *scales)


_PRODUCT_TYPES = {"Perpetual": Market.INVERSE, "PerpetualV2": Market.PERPETUAL, "Spot": Market.SPOT}
"""Phemex's product ``type`` → market: coin-margined contracts, USDT perpetuals, spot."""


def instruments_from_products(response: Mapping[str, Any]) -> dict[str, Instrument]:
    """Every instrument of a ``/public/products`` response, with its market type and scales.

    Inverse and spot products are under ``data.products`` (``priceScale``; spot quantities are
    in ``Ev`` units of ``valueScale``); USDT perpetuals (``PerpetualV2``, real values as decimal
    strings) under ``data.perpProductsV2`` and, in some responses, ``data.products`` too.
    Products of another type or with unusable scales are skipped: the shape rule still covers
    them.
    """
    data = response.get("data")
    if not isinstance(data, Mapping):
        return {}
    found: dict[str, Instrument] = {}
    for key in ("products", "perpProductsV2"):
        rows = data.get(key)
        for product in rows if isinstance(rows, list) else ():
            if not isinstance(product, Mapping):
                continue
            symbol, market = product.get("symbol"), _PRODUCT_TYPES.get(str(product.get("type")))
            if (
                not isinstance(symbol, str)
                or market is None
                or not SYMBOL_PATTERN.fullmatch(symbol)
            ):
                continue
            if market is Market.PERPETUAL:
                found[symbol] = Instrument(symbol, market, None, None)
                continue
            price_scale = product.get("priceScale")
            qty_scale = product.get("valueScale", 8) if market is Market.SPOT else 0
            if _scale(price_scale) and _scale(qty_scale):
                found[symbol] = Instrument(symbol, market, price_scale, qty_scale)
    return found


def _scale(value: Any) -> bool:
    """A scale that fixed point holds exactly: an int from 0 to ``FIXED_SCALE``."""
    return type(value) is int and 0 <= value <= FIXED_SCALE
