"""The Phemex websocket protocol: requests out, frames in.

Only what trade capture needs: subscribe / unsubscribe per market type, the app-level
``server.ping``, and three kinds of incoming frame (trade messages, replies, everything else).
Keys it does not know are ignored, so additions on Phemex's side (``dts``, ``mts``) are harmless.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from tradelake.markets import Instrument
from tradelake.model import INCREMENTAL, SNAPSHOT

TRADE_KINDS = frozenset((SNAPSHOT, INCREMENTAL))
INT64 = 1 << 63
"""Sequences are stored as Parquet int64: a larger one is a malformed frame, not a crash."""
_new = tuple.__new__
"""Builds a ``TradesMessage`` without its Python-level ``__new__``: once per frame."""


class MalformedFrame(ValueError):
    """A frame that is not JSON or not of any shape Phemex sends: counted, logged and skipped."""


class TradesMessage(NamedTuple):
    """A snapshot (rows newest first) or an incremental batch of one symbol's trades.

    ``key`` is the key the rows came under, ``trades`` or ``trades_p``: it must match the
    symbol's market (``Instrument.rows_key``), or the rows would be scaled wrongly.
    """

    symbol: str
    kind: str
    rows: list[Any]
    seq: int
    key: str


class Reply(NamedTuple):
    """The answer to one of our requests, matched by ``id``; ``error`` is None on success."""

    id: int
    result: Any
    error: Mapping[str, Any] | None


def request(request_id: int, method: str, *params: str) -> str:
    return orjson.dumps({"id": request_id, "method": method, "params": list(params)}).decode()


def subscribe(request_id: int, instrument: Instrument) -> str:
    return request(request_id, instrument.subscribe_method, instrument.symbol)


def unsubscribe(request_id: int, instrument: Instrument) -> str:
    return request(request_id, instrument.unsubscribe_method, instrument.symbol)


def ping(request_id: int) -> str:
    return request(request_id, "server.ping")


def parse(frame: str | bytes) -> TradesMessage | Reply | None:
    """Classify one frame; None for well-formed JSON of a shape we do not use.

    Raises MalformedFrame for frames that cannot be read, including trade messages whose
    envelope (symbol, type, rows) is wrong; individual bad rows are left to ``normalise``.
    """
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if type(msg) is not dict:
        raise MalformedFrame(f"not a JSON object: {type(msg).__name__}")
    key = "trades" if "trades" in msg else "trades_p" if "trades_p" in msg else None
    if key is not None:
        rows = msg[key]
        symbol, kind, seq = msg.get("symbol"), msg.get("type"), msg.get("sequence", 0)
        if type(symbol) is not str or kind not in TRADE_KINDS or type(rows) is not list:
            raise MalformedFrame(f"trade message with a bad envelope: {str(msg)[:200]}")
        if key == "trades" and "trades_p" in msg:
            raise MalformedFrame(f"trade message with both trades and trades_p: {str(msg)[:200]}")
        if type(seq) is not int or not -INT64 <= seq < INT64:
            raise MalformedFrame(f"trade message with a bad sequence: {seq!r}")
        return _new(TradesMessage, (symbol, kind, rows, seq, key))
    if "id" in msg and ("result" in msg or "error" in msg):
        error, request_id = msg.get("error"), msg["id"]
        if type(request_id) is not int or not (error is None or isinstance(error, dict)):
            raise MalformedFrame(f"reply with a bad id or error: {str(msg)[:200]}")
        return Reply(request_id, msg.get("result"), error)
    return None
