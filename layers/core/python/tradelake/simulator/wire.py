"""What the simulator puts on the wire: Phemex trade rows, messages, replies and deliberate garbage.

Rows are encoded once per tape, in the exact form Phemex uses per market type (scaled integers
for inverse and spot, decimal strings for perpetuals), so serving is slicing and serialising.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import orjson

from tradelake.markets import Instrument, Market
from tradelake.model import BUY, FIXED_ONE, Fill, format_fixed

INVALID_ARGUMENT = {"code": 6001, "message": "invalid argument"}
"""The only error Phemex is known to send for a bad subscribe (tests/fixtures/phemex/control)."""

WIRE_SIDES = {BUY: "Buy", "sell": "Sell"}

WireRow = list[Any]


class NotOnWire(ValueError):
    """A fill that the symbol's wire encoding cannot carry exactly (finer than its scale)."""


def encode_rows(instrument: Instrument, fills: Iterable[Fill]) -> list[WireRow]:
    """Fills as Phemex rows for ``instrument``; NotOnWire if a value would need rounding."""
    side = WIRE_SIDES
    if instrument.market is Market.PERPETUAL:
        return [[f.ts_ns, side[f.side], format_fixed(f.price), format_fixed(f.qty)] for f in fills]
    pf, qf = instrument.price_factor, instrument.qty_factor
    rows: list[WireRow] = []
    for f in fills:
        price, price_rest = divmod(f.price, pf)
        qty, qty_rest = divmod(f.qty, qf)
        if price_rest or qty_rest:
            raise NotOnWire(f"{instrument.symbol}: {f} is finer than the symbol's scales")
        rows.append([f.ts_ns, side[f.side], price, qty])
    return rows


def dumps(message: dict[str, Any]) -> str:
    """Compact JSON text, as Phemex sends it (a text frame, never binary)."""
    return orjson.dumps(message).decode()


def reply(request_id: Any, result: Any) -> str:
    return dumps({"error": None, "id": request_id, "result": result})


def error_reply(request_id: Any) -> str:
    return dumps({"error": INVALID_ARGUMENT, "id": request_id, "result": None})


def trades_message(
    instrument: Instrument,
    rows: list[WireRow],
    kind: str,
    sequence: int,
    extra: dict[str, Any] | None = None,
) -> str:
    """A snapshot or incremental; ``extra`` keys come first, as unannounced additions would."""
    message: dict[str, Any] = dict(extra or {})
    message["sequence"] = sequence
    message["symbol"] = instrument.symbol
    message[instrument.rows_key] = rows
    message["type"] = kind
    return dumps(message)


def garbage(
    rng: random.Random, instrument: Instrument, sequence: int, ts_ns: int, last_frame: str | None
) -> str:
    """One broken frame of a kind a real feed can produce; none carries a single readable trade.

    Kinds: not JSON, a real frame cut short, a trade message with a broken envelope, and a trade
    message whose EVERY row is unreadable (a parser that skips bad rows still gets nothing).
    """
    kind = rng.randrange(4)
    if kind == 0:
        return rng.choice(('{"sequence":', "}{", "{'id': 1}", "trade", '{"symbol":"BTCUSD",,}'))
    if kind == 1:
        text = last_frame or trades_message(instrument, [], "incremental", sequence)
        return text[: rng.randrange(1, len(text))]
    key = instrument.rows_key
    if kind == 2:
        return dumps(
            rng.choice(
                (
                    {"sequence": sequence, "symbol": instrument.symbol, key: "", "type": "x"},
                    {"sequence": sequence, "symbol": None, key: [], "type": "incremental"},
                    {"sequence": "1", "symbol": instrument.symbol, key: [], "type": "incremental"},
                )
            )
        )
    template = Fill(ts_ns, BUY, 60000 * FIXED_ONE, FIXED_ONE)
    bad_rows = broken_rows(encode_rows(instrument, [template])[0])
    rng.shuffle(bad_rows)
    rows = bad_rows[: rng.randint(1, len(bad_rows))]
    symbol = instrument.symbol
    return dumps({"sequence": sequence, "symbol": symbol, key: rows, "type": "incremental"})


def broken_rows(row: WireRow) -> list[Any]:
    """Every unreadable variant of one good row: each is a bad row to ``normalise.fills``.

    A row cut short, an unknown side, no timestamp, not a list, a zero quantity, a negative
    price, a float price (inexact, and of the wrong type for every market).
    """
    ts, side, price, qty = row
    negative = f"-{price}" if isinstance(price, str) else -price
    return [
        [ts, side, price],
        [ts, "Hold", price, qty],
        [None, side, price, qty],
        "oops",
        [ts, side, price, 0 if isinstance(qty, int) else "0"],
        [ts, side, negative, qty],
        [ts, side, 1.5, qty],
    ]


def unreadable(rng: random.Random, rows: Iterable[WireRow]) -> list[Any]:
    """``rows`` in the same order, each broken in one of the ways of ``broken_rows``."""
    return [rng.choice(broken_rows(row)) for row in rows]


def odd_message(rng: random.Random, symbol: str, ts_ns: int) -> str:
    """Well-formed JSON of a shape a trade client does not know: it must be ignored."""
    return dumps(
        rng.choice(
            (
                {"foo": 1},
                {"market24h": {"symbol": symbol, "timestamp": ts_ns}, "timestamp": ts_ns},
                {"type": "heartbeat", "ts": ts_ns // 1_000_000},
            )
        )
    )
