"""Which protocol a symbol speaks and how its integers scale (ARCHITECTURE.md §4).

Three market types share one websocket:

- inverse contracts (``BTCUSD``): ``trade.subscribe``, rows under ``trades``, integer ``priceEp``
  scaled by 10^4 and an integer contract quantity;
- USDT-margined perpetuals (``BTCUSDT``): ``trade_p.subscribe``, rows under ``trades_p``, real
  values as decimal strings;
- spot (``sBTCUSDT``): ``trade.subscribe``, rows under ``trades``, ``priceEp`` and quantity scaled
  by 10^8.

Scales come from the products list (``GET /public/products``) when it can be fetched, otherwise
from ``FALLBACK_SCALES``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tradelake.model import FIXED_SCALE

SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9]{2,32}$")


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
    """Tell the market type from the symbol's shape: ``sXXX`` spot, ``…USDT`` perpetual."""
    if not SYMBOL_PATTERN.match(symbol):
        raise UnknownSymbolError(
            f"{symbol!r} is not a Phemex symbol: letters and digits, "
            "e.g. BTCUSD, BTCUSDT or sBTCUSDT"
        )
    if len(symbol) > 1 and symbol[0] == "s" and symbol[1].isupper():
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

    @property
    def subscribe_method(self) -> str:
        return "trade_p.subscribe" if self.market is Market.PERPETUAL else "trade.subscribe"

    @property
    def unsubscribe_method(self) -> str:
        return "trade_p.unsubscribe" if self.market is Market.PERPETUAL else "trade.unsubscribe"

    @property
    def rows_key(self) -> str:
        return "trades_p" if self.market is Market.PERPETUAL else "trades"

    @property
    def price_factor(self) -> int:
        """Multiplier from a scaled integer price (``priceEp``) to fixed point."""
        return int(10 ** (FIXED_SCALE - (self.price_scale or 0)))

    @property
    def qty_factor(self) -> int:
        return int(10 ** (FIXED_SCALE - (self.qty_scale or 0)))


def instrument(symbol: str, scales: Mapping[str, tuple[int, int]] | None = None) -> Instrument:
    """The instrument for ``symbol``: scales from ``scales`` (the products list) or the fallback."""
    market = market_of(symbol)
    fallback = FALLBACK_SCALES[market]
    if fallback is None:
        return Instrument(symbol, market, None, None)
    price_scale, qty_scale = (scales or {}).get(symbol, fallback)
    if not (0 <= price_scale <= FIXED_SCALE and 0 <= qty_scale <= FIXED_SCALE):
        raise ValueError(f"{symbol}: scales {price_scale}/{qty_scale} exceed {FIXED_SCALE} digits")
    return Instrument(symbol, market, price_scale, qty_scale)


def scales_from_products(products: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Extract ``{symbol: (price scale, qty scale)}`` from a ``/public/products`` response.

    Inverse contracts carry ``priceScale`` (quantities are whole contracts); spot products carry
    ``priceScale`` and ``valueScale`` (base quantities are in ``Ev`` units). Products of other
    shapes are skipped: the fallback still covers them.
    """
    data = products.get("data") or {}
    found: dict[str, tuple[int, int]] = {}
    rows: Iterable[Any] = data.get("products") or [] if isinstance(data, Mapping) else data
    for product in rows:
        if not isinstance(product, Mapping):
            continue
        symbol, price_scale = product.get("symbol"), product.get("priceScale")
        if not isinstance(symbol, str) or not isinstance(price_scale, int):
            continue
        kind = str(product.get("type", ""))
        if kind == "Spot":
            qty_scale = product.get("valueScale", 8)
            if isinstance(qty_scale, int):
                found[symbol] = (price_scale, qty_scale)
        elif kind == "Perpetual":
            found[symbol] = (price_scale, 0)
    return found
