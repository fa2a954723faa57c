"""Completeness against ground truth: is every trade of a tape in the lake, exactly once?

Used by ``tradelake demo`` and the integration tests to prove the capture against the
simulator's own tape. A tape trade counts as expected from the lake's first trade of its symbol
to its last (a capture cannot hold what happened before it started); an expected trade that is
missing is excused only if a declared gap covers its instant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tradelake.model import Fill, Gap, Trade, trade_key


@dataclass(frozen=True, slots=True)
class SymbolCheck:
    symbol: str
    expected: int
    in_lake: int
    missing_in_gaps: int
    missing_outside_gaps: int
    extra: int
    """Rows in the lake that the tape does not have: must be 0."""
    duplicates: int
    """Rows whose ``trade_key`` appears more than once: must be 0."""

    @property
    def complete(self) -> bool:
        return self.missing_outside_gaps == 0 and self.extra == 0 and self.duplicates == 0


def tape_keys(symbol: str, fills: Iterable[Fill]) -> list[tuple[int, str]]:
    """``(ts_ns, trade_key)`` of every fill of a tape, with ``k`` as the capture assigns it."""
    seen: Counter[Fill] = Counter()
    out = []
    for f in fills:
        k = seen[f]
        seen[f] = k + 1
        out.append((f.ts_ns, trade_key(Trade(symbol, *f, k, 0, 0, ""))))
    return out


def check(
    tape: Mapping[str, Sequence[Fill]],
    lake: Mapping[str, Sequence[tuple[int, str]]],
    gaps: Iterable[Gap],
) -> list[SymbolCheck]:
    """Compare each symbol's tape with the lake's ``(ts_ns, trade_key)`` rows and the gaps."""
    gaps_by_symbol: dict[str, list[Gap]] = {}
    for gap in gaps:
        gaps_by_symbol.setdefault(gap.symbol, []).append(gap)
    results = []
    for symbol, fills in sorted(tape.items()):
        rows = lake.get(symbol, ())
        counts = Counter(key for _, key in rows)
        truth = tape_keys(symbol, fills)
        known = {key for _, key in truth}
        first = min((ts for ts, _ in rows), default=None)
        last = max((ts for ts, _ in rows), default=None)
        expected = [
            (ts, key)
            for ts, key in truth
            if first is not None
            and last is not None
            and first <= ts <= last
            and (ts > first or key in counts)
        ]
        missing = [ts for ts, key in expected if key not in counts]
        covered = [
            ts
            for ts in missing
            if any(g.from_ts_ns <= ts <= g.to_ts_ns for g in gaps_by_symbol.get(symbol, ()))
        ]
        results.append(
            SymbolCheck(
                symbol=symbol,
                expected=len(expected),
                in_lake=len(rows),
                missing_in_gaps=len(covered),
                missing_outside_gaps=len(missing) - len(covered),
                extra=sum(n for key, n in counts.items() if key not in known),
                duplicates=sum(n - 1 for n in counts.values() if n > 1),
            )
        )
    return results
