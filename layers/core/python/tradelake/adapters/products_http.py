"""Phemex's products list (``GET /public/products``), for live capture only.

Optional by design: when the list cannot be fetched (offline, rate limited, a shape we do not
know) the capture goes on with the symbol-shape rule and ``markets.FALLBACK_SCALES``, which hold
for every product listed today.
"""

from __future__ import annotations

import logging
import urllib.request
from urllib.parse import urlparse

import orjson

from tradelake.markets import Instrument, instruments_from_products

log = logging.getLogger(__name__)

REST_HOSTS = {"ws.phemex.com": "api.phemex.com", "phemex.com": "api.phemex.com"}
"""Websocket host → REST host; other hosts (the simulator, a proxy) have no products list."""


def products_url(ws_url: str) -> str | None:
    host = urlparse(ws_url).hostname or ""
    rest = REST_HOSTS.get(host)
    return f"https://{rest}/public/products" if rest else None


def fetch_products(ws_url: str, timeout_s: float = 5.0) -> dict[str, Instrument] | None:
    """Every product's instrument, or None (logged) when the list cannot be had."""
    url = products_url(ws_url)
    if url is None:
        return None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return instruments_from_products(orjson.loads(response.read()))
    except (OSError, ValueError) as exc:
        log.warning("products list unavailable (%s); market types from the symbols' shape", exc)
        return None
