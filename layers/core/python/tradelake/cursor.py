"""Exactly once across reconnects and restarts: the cursor, dedup and gaps (ARCHITECTURE.md §5).

Phemex sends no trade id and several fills can share one nanosecond, even as identical tuples. A
trade's identity is therefore ``(symbol, ts_ns, side, price, qty, k)``, ``k`` counting identical
fills earlier in the same nanosecond. A per-symbol cursor keeps the newest ``ts_ns`` and how many
of each tuple at that nanosecond have been taken; that is all the state needed, because Phemex
delivers each symbol's trades in time order and every subscribe starts with a snapshot of the most
recent ones:

- an incremental fill older than the cursor cannot be placed: it is dropped and its instant is
  declared a gap (``out_of_order``), so the lake never claims completeness it does not have;
- snapshot rows older than the cursor are duplicates; rows at the cursor's nanosecond are
  reconciled by count; newer rows are the trades missed while disconnected;
- if the snapshot does not reach back to the cursor, everything between the cursor and the
  snapshot's oldest row may be missing: that inclusive interval is a gap (``snapshot_short``).

Assumption, true of Phemex and of the simulator: the fills of one nanosecond arrive in one
message. The ``Reconciler`` holds the live state of one symbol; ``Cursor`` is the durable state,
advanced only by trades the sink has acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tradelake.model import INCREMENTAL, SNAPSHOT, Fill, Gap, Trade, format_fixed, parse_fixed

FillKey = tuple[str, int, int]
"""(side, price, qty) of a fill: with ``ts_ns`` it is the tuple that ``k`` counts."""

NO_CURSOR = -1


@dataclass(slots=True)
class SymbolCursor:
    """The newest nanosecond taken for a symbol and how many of each tuple were taken at it."""

    ts_ns: int = NO_CURSOR
    counts: dict[FillKey, int] = field(default_factory=dict)


@dataclass(slots=True)
class Cursor:
    """The durable position of every symbol: what the lake is known to hold."""

    symbols: dict[str, SymbolCursor] = field(default_factory=dict)

    def advance(self, acknowledged: Sequence[Trade]) -> None:
        """Move past ``acknowledged`` trades (in the order they were written).

        Only the trades at each symbol's newest nanosecond matter; they are at the end of the
        batch, so the scan runs backwards and settles each symbol on its last row.
        """
        newest: dict[str, int] = {}
        fresh: dict[str, dict[FillKey, int]] = {}
        for t in reversed(acknowledged):
            top = newest.setdefault(t.symbol, t.ts_ns)
            if t.ts_ns != top:
                continue
            counts = fresh.setdefault(t.symbol, {})
            key = (t.side, t.price, t.qty)
            if counts.get(key, 0) <= t.k:
                counts[key] = t.k + 1
        for symbol, ts_ns in newest.items():
            current = self.symbols.get(symbol)
            if current is None or ts_ns > current.ts_ns:
                self.symbols[symbol] = SymbolCursor(ts_ns, fresh[symbol])
            elif ts_ns == current.ts_ns:
                for key, n in fresh[symbol].items():
                    if current.counts.get(key, 0) < n:
                        current.counts[key] = n

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form with exact decimal strings (also the Step Functions payload)."""
        return {
            "version": 1,
            "symbols": {
                symbol: {
                    "ts_ns": c.ts_ns,
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
        """Inverse of ``to_json``; raises ValueError with the offending symbol on bad input."""
        if data.get("version") != 1:
            raise ValueError(f"unsupported cursor version {data.get('version')!r}")
        symbols: dict[str, SymbolCursor] = {}
        for symbol, c in data.get("symbols", {}).items():
            try:
                counts = {
                    (str(side), parse_fixed(price), parse_fixed(qty)): int(n)
                    for side, price, qty, n in c["fills"]
                }
                symbols[symbol] = SymbolCursor(int(c["ts_ns"]), counts)
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"cursor for {symbol} is malformed: {exc}") from exc
        return cls(symbols)

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


class Reconciler:
    """The live state of one symbol: gives each fill its ``k`` and drops what was taken before."""

    __slots__ = ("counts", "duplicates", "symbol", "ts_ns")

    def __init__(self, symbol: str, start: SymbolCursor | None = None) -> None:
        self.symbol = symbol
        self.ts_ns = start.ts_ns if start else NO_CURSOR
        self.counts: dict[FillKey, int] = dict(start.counts) if start else {}
        self.duplicates = 0

    def incremental(
        self, fills: Iterable[Fill], recv_ns: int, seq: int
    ) -> tuple[list[Trade], list[Gap]]:
        """Take new fills (oldest first); all are new trades unless older than the cursor."""
        symbol, ts0, counts = self.symbol, self.ts_ns, self.counts
        out: list[Trade] = []
        gaps: list[Gap] = []
        for ts, side, price, qty in fills:
            if ts > ts0:
                ts0, counts = ts, {}
            elif ts < ts0:
                gaps.append(Gap(symbol, ts, ts, recv_ns, "out_of_order"))
                continue
            key = (side, price, qty)
            k = counts.get(key, 0)
            counts[key] = k + 1
            out.append(Trade(symbol, ts, side, price, qty, k, recv_ns, seq, INCREMENTAL))
        self.ts_ns, self.counts = ts0, counts
        return out, gaps

    def snapshot(
        self, fills: Sequence[Fill], recv_ns: int, seq: int
    ) -> tuple[list[Trade], list[Gap]]:
        """Reconcile a snapshot (oldest first, i.e. already reversed) against the cursor."""
        if not fills:
            return [], []
        symbol, base_ts, base = self.symbol, self.ts_ns, self.counts
        gaps: list[Gap] = []
        if base_ts != NO_CURSOR and fills[0].ts_ns > base_ts:
            gaps.append(Gap(symbol, base_ts, fills[0].ts_ns, recv_ns, "snapshot_short"))
        ts0, counts = base_ts, dict(base)
        seen_at_base: dict[FillKey, int] = {}
        out: list[Trade] = []
        duplicates = 0
        for ts, side, price, qty in fills:
            key = (side, price, qty)
            if ts < base_ts:
                duplicates += 1
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
                if ts > ts0:
                    ts0, counts = ts, {}
                k = counts.get(key, 0)
                counts[key] = k + 1
            out.append(Trade(symbol, ts, side, price, qty, k, recv_ns, seq, SNAPSHOT))
        self.ts_ns, self.counts = ts0, counts
        self.duplicates += duplicates
        return out, gaps
