"""cryptofeed 2.4.1's Phemex message handler on a workload file: run by bench/hotpath.py.

Runs in the bench-only venv (bench/cryptofeed-venv.sh), never in tradelake's. The feed's
products list, which it fetches over HTTP when constructed, is replaced by a static payload for
the workload's symbols (``--products``), so nothing leaves the machine. Replies carry its
own request id (``_as_its_reply``). Each frame goes through
``Phemex.message_handler`` exactly as its connection handler would call it (an awaited coroutine
per frame, receipt time in seconds), with a no-op trade callback.

Prints one JSON object: {"seconds": float, "trades": emitted Trade objects, "frames": int}.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import time
from types import SimpleNamespace
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", help="lines of RECV_NS<TAB>FRAME")
    parser.add_argument("--products", required=True, help="JSON: {symbol: market}")
    args = parser.parse_args()

    from cryptofeed.defines import TRADES
    from cryptofeed.exchanges.phemex import Phemex

    markets: dict[str, str] = json.loads(args.products)
    payload = {"data": {"products": [_product(s, m) for s, m in markets.items()]}}

    def read(*_args: Any, **_kwargs: Any) -> Any:
        return payload

    Phemex.http_sync.read = read
    # cryptofeed logs a warning per frame it does not handle (trades_p, replies): its cost stays
    # (the level check), the output does not.
    logging.getLogger("feedhandler").setLevel(logging.ERROR)

    frames: list[tuple[str, float]] = []
    with open(args.workload, encoding="ascii") as f:
        for line in f:
            recv_ns, frame = line.rstrip("\n").split("\t", 1)
            frames.append((_as_its_reply(frame), int(recv_ns) / 1e9))

    gc.freeze()  # the frames are the input, not the heap a feed's collector scans
    emitted = 0

    async def on_trade(trade: Any, receipt_timestamp: float) -> None:
        nonlocal emitted
        emitted += 1

    feed = Phemex(
        symbols=list(_std_symbols(markets)), channels=[TRADES], callbacks={TRADES: on_trade}
    )
    handler, conn = feed.message_handler, SimpleNamespace(uuid="bench")  # what it logs

    async def run() -> float:
        start = time.process_time()
        for frame, receipt in frames:
            await handler(frame, conn, receipt)
        return time.process_time() - start

    seconds = asyncio.run(run())
    print(json.dumps({"seconds": seconds, "trades": emitted, "frames": len(frames)}))


def _as_its_reply(frame: str) -> str:
    """A reply to one of tradelake's subscribes as the reply to cryptofeed's own (id 1).

    Its handler reads ids 100 and 101 as answers to its authentication; tradelake's ids count
    up per subscribe and would reach them.
    """
    msg = json.loads(frame)
    if "result" in msg and "id" in msg:
        return json.dumps({**msg, "id": 1}, separators=(",", ":"))
    return frame


_TYPES = {"inverse": "Perpetual", "perpetual": "PerpetualV2", "spot": "Spot"}


def _product(symbol: str, market: str) -> dict[str, Any]:
    """One ``/exchange/public/cfg/v2/products`` entry, with the fields cryptofeed reads."""
    base, quote = _pair(symbol, market)
    entry: dict[str, Any] = {
        "symbol": symbol,
        "type": _TYPES[market],
        "status": "Listed",
        "displaySymbol": f"{base} / {quote}",
        "tickSize": "0.5",
    }
    if market == "inverse":
        entry["priceScale"] = 4
    elif market == "spot":
        entry["priceScale"] = 8
    return entry


def _pair(symbol: str, market: str) -> tuple[str, str]:
    name = symbol[1:] if market == "spot" else symbol
    quote = "USDT" if name.endswith("USDT") else "USD"
    return name[: -len(quote)], quote


def _std_symbols(markets: dict[str, str]) -> list[str]:
    """cryptofeed's normalised names (``BTC-USD-PERP``, ``GRT-USDT``) of the workload's symbols."""
    names = []
    for symbol, market in markets.items():
        base, quote = _pair(symbol, market)
        names.append(f"{base}-{quote}" + ("" if market == "spot" else "-PERP"))
    return names


if __name__ == "__main__":
    main()
