"""Trades as Firehose records: JSON lines packed up to 500 to a record (ARCHITECTURE.md §6).

One trade is one JSON object on one line, with the columns of ``schema.TRADE_COLUMNS`` and the
``symbol``::

    {"symbol":"BTCUSD","ts_ns":1795737600123456789,"ts":1795737600123,"side":"buy",
     "price":32991.5,"qty":40,"trade_key":"BTCUSD:1795737600123456789:buy:32991.5:40:0",
     "recv_ns":1795737600125000000,"seq":77,"source":"incremental"}

- ``ts`` is the event time in epoch MILLISECONDS: Firehose's Hive JSON SerDe reads a timestamp
  from epoch millis, and its dynamic partitioning takes the EVENT hour with the JQ expression
  ``.ts/1000|floor|strftime(...)``;
- ``price`` and ``qty`` are JSON numbers written with ``model.format_fixed``: the exact decimal,
  never through a float, which the Parquet conversion reads into ``decimal(28,10)``. Their range
  is guaranteed by ``normalise`` (a value beyond decimal(28,10) never becomes a trade);
- strings are JSON-escaped (and ASCII), so the byte length of a line is its ``len``.

Firehose deaggregates at most 500 JSON objects from one record, a record may hold 1,000 KiB and
a PutRecordBatch call 500 records and 4 MiB: ``pack`` and ``batches`` respect all four. Ingestion
is billed per record rounded up to 5 KB, so 500 trades (~120 KB) to a record cost ~30-50 times
less than one trade per record.

Each line is one f-string (no dict, no JSON encoder) because this runs for every trade; ``unpack``
is the exact inverse, for tests and for anyone reading records back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Final, NamedTuple, TypeVar

from tradelake import hotpath
from tradelake.model import Trade, format_fixed, parse_fixed

MAX_TRADES_PER_RECORD: Final = 500
"""Firehose's multi-record deaggregation splits at most 500 JSON objects out of one record."""
MAX_RECORD_BYTES: Final = 1_000 * 1024
"""Firehose's record size limit (1,000 KiB, before base64)."""
MAX_BATCH_RECORDS: Final = 500
MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
"""PutRecordBatch limits: 500 records and 4 MiB of data per call."""

_NS_PER_MS: Final = 1_000_000

T = TypeVar("T")
_compiled = hotpath.compiled
"""Writes the lines of plain trades (printable ASCII, positive values) and packs lines into
records; ``_lines`` and the loop of ``pack`` are the reference, and do every other case."""
_new = tuple.__new__


class Record(NamedTuple):
    """One Firehose record: ``trades`` consecutive trades as newline-terminated JSON lines."""

    data: bytes
    trades: int


@lru_cache(maxsize=4096)
def _escaped(text: str) -> str:
    """The body of ``text`` as a JSON string (no quotes), ASCII only: symbols, sides, sources."""
    return json.dumps(text)[1:-1]


def trade_line(t: Trade) -> str:
    """One trade as its JSON line, newline included; ``trade_key`` equals ``model.trade_key``."""
    return _lines((t,))[0]


@lru_cache(maxsize=4096)
def _head(symbol: str) -> tuple[str, str]:
    """The start of a symbol's lines and of its trade keys."""
    s = _escaped(symbol)
    return f'{{"symbol":"{s}","ts_ns":', f'"trade_key":"{s}:'


def _lines(trades: Sequence[Trade]) -> list[str]:
    """``trade_line`` of every trade: the hot path of the ingest Lambda, hence its shape.

    ``ts`` is the decimal text of ``ts_ns`` without its last six digits (``ts_ns // 10**6``: a
    trade time has more than six digits), and the trades of one message share their tail
    (``recv_ns``, ``seq``, ``source``), which is built once for them.
    """
    esc, ff = _escaped, format_fixed
    out: list[str] = []
    append = out.append
    symbol0 = recv0 = seq0 = source0 = None
    head = key0 = tail = ""
    for symbol, ts_ns, side, price, qty, k, recv_ns, seq, source in trades:
        if symbol != symbol0:
            symbol0 = symbol
            head, key0 = _head(symbol)
        if recv_ns != recv0 or seq != seq0 or source != source0:
            recv0, seq0, source0 = recv_ns, seq, source
            tail = f'"recv_ns":{recv_ns},"seq":{seq},"source":"{esc(source)}"}}\n'
        t, d, p, q = f"{ts_ns}", esc(side), ff(price), ff(qty)
        append(
            f'{head}{t},"ts":{t[:-6] if ts_ns >= _NS_PER_MS else ts_ns // _NS_PER_MS},'
            f'"side":"{d}","price":{p},"qty":{q},{key0}{t}:{d}:{p}:{q}:{k}",{tail}'
        )
    return out


def pack(
    trades: Sequence[Trade],
    max_trades: int = MAX_TRADES_PER_RECORD,
    max_bytes: int = MAX_RECORD_BYTES,
) -> list[Record]:
    """Pack ``trades`` in order into records of at most ``max_trades`` lines and ``max_bytes``.

    Records are filled greedily, so every trade is in exactly one record, in order. Raises
    ValueError if a single line is longer than ``max_bytes`` (it cannot be sent at all).
    """
    if max_trades < 1:
        raise ValueError("max_trades must be at least 1")
    written = written_lines(trades)
    packed = None if written is None else pack_lines(written, len(trades), max_trades, max_bytes)
    if packed is not None:
        return packed
    lines = _lines(trades)
    records: list[Record] = []
    i, n = 0, len(lines)
    while i < n:
        chunk = lines[i : i + max_trades]
        data = "".join(chunk)
        if len(data) > max_bytes:  # rare: only with a tiny max_bytes or huge strings
            size, j = 0, i
            while j < n and j - i < max_trades and size + len(lines[j]) <= max_bytes:
                size += len(lines[j])
                j += 1
            if j == i:
                raise ValueError(
                    f"one trade is {len(lines[i])} bytes as JSON, more than a record holds "
                    f"({max_bytes}): {lines[i][:200]!r}"
                )
            chunk = lines[i:j]
            data = "".join(chunk)
        records.append(Record(data.encode("ascii"), len(chunk)))
        i += len(chunk)
    return records


def written_lines(trades: Sequence[Trade]) -> bytes | None:
    """Every trade's line, joined, from the compiled path; None without it, or if one is not of
    the plain kind it writes (``_lines`` writes those)."""
    return None if _compiled is None else _compiled.lines(trades)


def pack_lines(
    lines: bytes,
    trades: int,
    max_trades: int = MAX_TRADES_PER_RECORD,
    max_bytes: int = MAX_RECORD_BYTES,
) -> list[Record] | None:
    """``pack`` of ``trades`` trades whose lines are already written (``Output.lines``), with no
    look at the trades themselves; None without the compiled path or when a line is longer
    than a record (``pack`` then says which)."""
    done = None if _compiled is None else _compiled.records(lines, max_trades, max_bytes)
    if done is None:
        return None
    if sum(n for _, n in done) != trades:  # lines of other trades: a bug, never a silent loss
        raise ValueError(f"{trades} trades but lines of {sum(n for _, n in done)}")
    return [_new(Record, record) for record in done]


def batches(
    items: Sequence[T],
    size: Callable[[T], int],
    max_records: int = MAX_BATCH_RECORDS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> Iterator[Sequence[T]]:
    """Split ``items`` (records, in order) into PutRecordBatch calls within both limits.

    ``size`` gives an item's data length; an item larger than ``max_bytes`` is a ValueError.
    """
    start, total = 0, 0
    for i, item in enumerate(items):
        n = size(item)
        if n > max_bytes:
            raise ValueError(f"a record of {n} bytes exceeds a batch of {max_bytes} bytes")
        if i - start == max_records or total + n > max_bytes:
            yield items[start:i]
            start, total = i, 0
        total += n
    if start < len(items):
        yield items[start:]


def read_line(line: str | bytes) -> Trade:
    """The trade of one JSON line, exactly (numbers never pass through a float).

    Checks that the line is exactly what ``trade_line`` writes for that trade (``ts`` is ``ts_ns``
    in ms, ``trade_key`` is the trade's identity, canonical numbers); raises ValueError otherwise.
    """
    row = json.loads(line, parse_float=str)
    try:
        symbol, ts_ns, side = row["symbol"], row["ts_ns"], row["side"]
        price, qty = parse_fixed(str(row["price"])), parse_fixed(str(row["qty"]))
        key: str = row["trade_key"]
        trade = Trade(
            symbol,
            ts_ns,
            side,
            price,
            qty,
            int(key.rsplit(":", 1)[1]),
            row["recv_ns"],
            row["seq"],
            row["source"],
        )
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a trade line ({exc!r}): {line!r:.200}") from exc
    text = line.decode() if isinstance(line, bytes) else line
    if trade_line(trade) != text.rstrip("\n") + "\n":  # ts, trade_key, key order, number forms
        raise ValueError(f"inconsistent trade line: {line!r:.200}")
    return trade


def unpack(data: bytes) -> list[Trade]:
    """The trades of a record, or of Firehose output made of concatenated records, in order."""
    return [read_line(line) for line in data.decode().split("\n") if line]
