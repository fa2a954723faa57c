"""Exactly once across reconnects and restarts: the cursor, dedup and gaps (ARCHITECTURE.md §5).

Phemex sends no trade id and several fills can share one nanosecond, even as identical tuples. A
trade's identity is therefore ``(symbol, ts_ns, side, price, qty, k)``, ``k`` counting identical
fills earlier in the same nanosecond. A per-symbol cursor keeps the newest ``ts_ns`` and how many
of each tuple at that nanosecond have been taken; that is all the state needed, because Phemex
delivers each symbol's trades in time order and every subscribe starts with a snapshot of the most
recent ones (``feed.Feed`` holds a subscription's incrementals until its snapshot is reconciled):

- snapshot rows older than the position are duplicates; rows at its nanosecond are reconciled by
  count; newer rows are the trades missed while away;
- a snapshot proves the position complete only if it reaches back BEFORE the position's
  nanosecond. Otherwise the inclusive interval from the position to the snapshot's oldest row
  may hold missing trades and is a gap (``snapshot_short``). That includes the interval
  ``[ts, ts]`` when the oldest row is at the position's own nanosecond: the cursor advances by
  what the sink acknowledged, Firehose acknowledges whole records of 500 trades, so the cursor
  can stop between two fills of one nanosecond, and the fills of it that fell off the snapshot
  are unknowable. (Keeping acknowledged positions on whole nanoseconds instead would need every
  sink to pack by nanosecond; a one-nanosecond gap is cheaper, and honest.);
- without a cursor (a new lake, or a crash before the first cursor save, which the lake cannot
  tell apart) everything before the first row, and its own nanosecond, may be missing: that is
  the gap ``[2000-01-01, first]`` (``no_cursor``), so a lost cursor is never silent;
- after a snapshot, an incremental fill within its span is a duplicate (a snapshot can overlap
  incrementals still in flight), except at its newest nanosecond, which it may have caught half
  way: there fills beyond the snapshot's count are new. Any other fill older than the position
  cannot be placed: it is dropped and its instant declared (``out_of_order``).

Assumption, true of Phemex and of the simulator: the fills of one nanosecond arrive in one
message. The ``Reconciler`` holds the live state of one symbol; ``Cursor`` is the durable state,
advanced only by trades the sink has acknowledged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple

from tradelake import hotpath
from tradelake.model import (
    BUY,
    EARLIEST_NS,
    FIXED_LIMIT,
    INCREMENTAL,
    SELL,
    SNAPSHOT,
    Fill,
    Gap,
    Trade,
    format_fixed,
    parse_fixed,
)

FillKey = tuple[str, int, int]
"""(side, price, qty) of a fill: with ``ts_ns`` it is the tuple that ``k`` counts."""
_compiled = hotpath.compiled
"""Takes ``Cursor.advance``'s pass over plain trades; ``_settle`` is the reference."""

NO_CURSOR = -1

CURSOR_VERSION = 2
"""The JSON format ``Cursor.to_json`` writes and the only one ``from_json`` reads."""


@dataclass(slots=True)
class SymbolCursor:
    """The newest nanosecond taken for a symbol and how many of each tuple were taken at it."""

    ts_ns: int = NO_CURSOR
    counts: dict[FillKey, int] = field(default_factory=dict)


def _settle(
    acknowledged: Sequence[Trade],
) -> tuple[Mapping[str, int], Mapping[str, tuple[int, dict[FillKey, int]]]]:
    """Per symbol: its trades in ``acknowledged``, and its newest nanosecond with how many of
    each fill it holds there (the reference of the compiled ``settle``)."""
    newest: dict[str, int] = {}
    fresh: dict[str, dict[FillKey, int]] = {}
    get = newest.get
    for t in reversed(acknowledged):
        symbol, ts_ns = t[0], t[1]  # runs for every trade: plain indexing
        top = get(symbol)
        if top is None:
            newest[symbol] = top = ts_ns
        if ts_ns != top:
            continue
        counts = fresh.setdefault(symbol, {})
        key = (t.side, t.price, t.qty)
        if counts.get(key, 0) <= t.k:
            counts[key] = t.k + 1
    written = Counter(map(itemgetter(0), acknowledged))  # 0: the symbol
    return written, {symbol: (ts_ns, fresh[symbol]) for symbol, ts_ns in newest.items()}


@dataclass(slots=True)
class Cursor:
    """The durable position of every symbol: what the lake is known to hold."""

    symbols: dict[str, SymbolCursor] = field(default_factory=dict)

    def advance(self, acknowledged: Sequence[Trade]) -> Mapping[str, int]:
        """Move past ``acknowledged`` trades (in the order they were written); return how many
        of each symbol they are (the capture's ``written``: one pass does both).

        Only the trades at each symbol's newest nanosecond matter; they are at the end of the
        batch, so the scan runs backwards and settles each symbol on its last row.
        """
        settled = _compiled.settle(acknowledged) if _compiled is not None else None
        if settled is None:
            written, tops = _settle(acknowledged)
        else:
            written, tops = settled
        for symbol, (ts_ns, fresh) in tops.items():
            current = self.symbols.get(symbol)
            if current is None or ts_ns > current.ts_ns:
                self.symbols[symbol] = SymbolCursor(ts_ns, fresh)
            elif ts_ns == current.ts_ns:
                for key, n in fresh.items():
                    if current.counts.get(key, 0) < n:
                        current.counts[key] = n
        return written

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form (the cursor file, the S3 checkpoint, the Step Functions payload).

        Version 2 holds no float and no integer above 2^53: ``ts_ns`` is a string of digits and
        prices and quantities are canonical decimal strings, because Step Functions and shell
        tools (``jq``) may read JSON numbers as doubles and round a nanosecond timestamp.
        """
        return {
            "version": CURSOR_VERSION,
            "symbols": {
                symbol: {
                    "ts_ns": str(c.ts_ns),
                    "fills": [
                        [side, format_fixed(price), format_fixed(qty), n]
                        for (side, price, qty), n in sorted(c.counts.items())
                    ],
                }
                for symbol, c in sorted(self.symbols.items())
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cursor:
        """Inverse of ``to_json``, strict: a ValueError naming the symbol and what is wrong.

        Nothing is coerced: a cursor that is not exactly what ``to_json`` writes may have been
        rounded or edited by hand, and resuming from a wrong position writes duplicates or
        skips trades without declaring a gap.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a cursor must be a JSON object, not {_kind(data)}")
        version = data.get("version")
        if type(version) is not int or version != CURSOR_VERSION:
            if type(version) is int and version == 1:
                raise ValueError(
                    "cursor version 1 is no longer read (its ts_ns was a JSON number, which JSON"
                    " tools may round): move the cursor aside; the next run then starts without"
                    " one and declares everything before its first trade (no_cursor)"
                )
            raise ValueError(
                f"unsupported cursor version {version!r}: expected the integer {CURSOR_VERSION}"
            )
        _no_unknown_keys(data, {"version", "symbols"}, "cursor")
        symbols = data.get("symbols")
        if not isinstance(symbols, Mapping):
            raise ValueError(f"cursor symbols must be an object, not {_kind(symbols)}")
        return cls({str(s): _symbol_from_json(str(s), c) for s, c in symbols.items()})

    def merge(self, other: Cursor) -> Cursor:
        """The newer position of each symbol from either cursor.

        The ingest Lambda gets a cursor in its Step Functions payload and finds one checkpointed
        in S3; after a timeout the checkpoint is ahead of the payload, and starting from the
        older one would write duplicates.
        """
        merged = self.copy()
        for symbol, theirs in other.symbols.items():
            mine = merged.symbols.get(symbol)
            if mine is None or theirs.ts_ns > mine.ts_ns:
                merged.symbols[symbol] = SymbolCursor(theirs.ts_ns, dict(theirs.counts))
            elif theirs.ts_ns == mine.ts_ns:
                for key, n in theirs.counts.items():
                    mine.counts[key] = max(n, mine.counts.get(key, 0))
        return merged

    def copy(self) -> Cursor:
        return Cursor({s: SymbolCursor(c.ts_ns, dict(c.counts)) for s, c in self.symbols.items()})


def _kind(value: object) -> str:
    """A JSON value's kind for an error message (``int``, ``str``, ``list``, ``null`` ...)."""
    return "null" if value is None else type(value).__name__


def _no_unknown_keys(data: Mapping[str, Any], known: set[str], where: str) -> None:
    """Refuse keys this version does not write: they mean another format or a hand edit."""
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}")


def _symbol_from_json(symbol: str, data: object) -> SymbolCursor:
    """One symbol's entry of a version 2 cursor; every refusal names the symbol."""
    where = f"cursor for {symbol}"
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be an object, not {_kind(data)}")
    _no_unknown_keys(data, {"ts_ns", "fills"}, where)
    if "ts_ns" not in data or "fills" not in data:
        raise ValueError(f"{where} needs both ts_ns and fills")
    ts_ns = data["ts_ns"]
    if not isinstance(ts_ns, str):
        raise ValueError(
            f"{where}: ts_ns must be a string of decimal digits, not {_kind(ts_ns)}"
            " (a JSON number may have been rounded to a double on the way)"
        )
    if not (ts_ns.isascii() and ts_ns.isdigit() and str(int(ts_ns)) == ts_ns):
        raise ValueError(f"{where}: ts_ns must be a string of decimal digits, not {ts_ns!r}")
    fills = data["fills"]
    if not isinstance(fills, list):
        raise ValueError(f"{where}: fills must be a list, not {_kind(fills)}")
    counts: dict[FillKey, int] = {}
    for i, entry in enumerate(fills):
        at = f"{where}: fills[{i}]"
        if not isinstance(entry, list) or len(entry) != 4:
            raise ValueError(f"{at} must be a list [side, price, qty, count], not {entry!r}")
        side, price, qty, n = entry
        if side not in (BUY, SELL):
            raise ValueError(f"{at}: side must be 'buy' or 'sell', not {side!r}")
        key = (side, _positive_fixed(price, f"{at}: price"), _positive_fixed(qty, f"{at}: qty"))
        if type(n) is not int or n < 1:
            raise ValueError(f"{at}: count must be an integer >= 1, not {n!r}")
        if key in counts:
            raise ValueError(f"{at} repeats the fill {side} {price} x {qty}")
        counts[key] = n
    return SymbolCursor(int(ts_ns), counts)


def _positive_fixed(text: object, what: str) -> int:
    """A price or quantity exactly as ``to_json`` writes it: a canonical decimal string.

    The bounds are the ones ``normalise`` lets into the lake, so a cursor the capture wrote
    always reads back, and one that was rewritten on the way (``"40.0"``, ``"4e1"``) does not.
    """
    if isinstance(text, str):
        try:
            value = parse_fixed(text)
        except ValueError:
            pass
        else:
            if 0 < value < FIXED_LIMIT and format_fixed(value) == text:
                return value
    raise ValueError(f"{what} must be a positive decimal string like '32991.5', not {text!r}")


class Batch(NamedTuple):
    """Fills of one message, oldest first, with what the trades they become record of it."""

    fills: Sequence[Fill]
    recv_ns: int
    seq: int
    source: str


class Reconciler:
    """The live state of one symbol: gives each fill its ``k`` and drops what was taken before."""

    __slots__ = ("counts", "covered", "duplicates", "repeated", "snapshot_top", "symbol", "ts_ns")

    def __init__(self, symbol: str, start: SymbolCursor | None = None) -> None:
        self.symbol = symbol
        self.ts_ns = start.ts_ns if start else NO_CURSOR
        self.counts: dict[FillKey, int] = dict(start.counts) if start else {}
        self.duplicates = 0
        self.covered = (NO_CURSOR, NO_CURSOR)
        """Oldest and newest ``ts_ns`` of the last reconciled snapshot: what it vouches for."""
        self.snapshot_top: dict[FillKey, int] = {}
        """How many of each fill that snapshot held at its newest nanosecond."""
        self.repeated: dict[FillKey, int] = {}
        """How many of each an incremental has repeated at that nanosecond since."""

    def incremental(
        self, fills: Iterable[Fill], recv_ns: int, seq: int
    ) -> tuple[list[Trade], list[Gap]]:
        """Take new fills (oldest first): new trades, unless at or before the position."""
        symbol, ts0, counts = self.symbol, self.ts_ns, self.counts
        oldest, newest = self.covered
        out: list[Trade] = []
        gaps: list[Gap] = []
        append, new = out.append, tuple.__new__  # a Trade without the Python-level __new__
        for ts, side, price, qty in fills:
            key = (side, price, qty)
            if ts > ts0:
                ts0, counts = ts, {key: 1}
                append(new(Trade, (symbol, ts, side, price, qty, 0, recv_ns, seq, INCREMENTAL)))
                continue
            if oldest <= ts <= newest:
                if ts < ts0 or ts < newest or self._repeats(key):
                    self.duplicates += 1
                    continue
            elif ts < ts0:
                gaps.append(Gap(symbol, ts, ts, recv_ns, "out_of_order"))
                continue
            k = counts.get(key, 0)
            counts[key] = k + 1
            append(new(Trade, (symbol, ts, side, price, qty, k, recv_ns, seq, INCREMENTAL)))
        self.ts_ns, self.counts = ts0, counts
        return out, gaps

    def _repeats(self, key: FillKey) -> bool:
        """Whether an incremental fill at the snapshot's newest nanosecond is one it held.

        The snapshot may have been cut while that nanosecond's fills were still coming in: a
        fill beyond the snapshot's count of it is a new trade, the others are repeats.
        """
        n = self.repeated.get(key, 0) + 1
        self.repeated[key] = n
        return n <= self.snapshot_top.get(key, 0)

    def reconcile(
        self, batches: Sequence[Batch], detected_ns: int, reason: str = "snapshot_short"
    ) -> tuple[list[Trade], list[Gap]]:
        """Reconcile a subscription's first view against the position (see the module docstring).

        ``batches`` are contiguous and oldest first: a snapshot (already reversed), perhaps
        followed by incrementals, or incrementals alone when no snapshot came (``reason`` then
        names that in the gap before them).
        """
        first = next((b.fills[0].ts_ns for b in batches if b.fills), None)
        if first is None:
            return [], []
        symbol, base_ts, base = self.symbol, self.ts_ns, self.counts
        gaps: list[Gap] = []
        if base_ts == NO_CURSOR:
            gaps.append(Gap(symbol, EARLIEST_NS, first, detected_ns, "no_cursor"))
        elif first >= base_ts:
            gaps.append(Gap(symbol, base_ts, first, detected_ns, reason))
        ts0, counts = base_ts, dict(base)
        seen_at_base: dict[FillKey, int] = {}
        out: list[Trade] = []
        append, new = out.append, tuple.__new__  # a Trade without the Python-level __new__
        duplicates = 0
        for batch in batches:
            recv_ns, seq, source = batch.recv_ns, batch.seq, batch.source
            if source == SNAPSHOT and batch.fills:
                newest = batch.fills[-1].ts_ns
                self.covered = (batch.fills[0].ts_ns, newest)
                self.snapshot_top, self.repeated = {}, {}
                for f in reversed(batch.fills):
                    if f.ts_ns != newest:
                        break
                    key = (f.side, f.price, f.qty)
                    self.snapshot_top[key] = self.snapshot_top.get(key, 0) + 1
            for ts, side, price, qty in batch.fills:
                if ts < base_ts:
                    duplicates += 1
                    continue
                key = (side, price, qty)
                if ts > ts0:  # past the position: a new nanosecond, its first fill
                    ts0, counts = ts, {key: 1}
                    append(new(Trade, (symbol, ts, side, price, qty, 0, recv_ns, seq, source)))
                    continue
                if ts == base_ts:
                    n = seen_at_base.get(key, 0) + 1
                    seen_at_base[key] = n
                    if n <= base.get(key, 0):
                        duplicates += 1
                        continue
                    k = n - 1
                    counts[key] = n
                else:
                    k = counts.get(key, 0)
                    counts[key] = k + 1
                append(new(Trade, (symbol, ts, side, price, qty, k, recv_ns, seq, source)))
        self.ts_ns, self.counts = ts0, counts
        self.duplicates += duplicates
        return out, gaps
