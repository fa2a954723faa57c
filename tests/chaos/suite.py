"""What every chaos scenario gets (the ``chaos`` fixture) and how it reads a local lake back."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.lake_files import read_gaps
from tradelake.model import Gap
from tradelake.simulator.tape import Tape
from tradelake.verify import SymbolCheck, check


@dataclass(frozen=True)
class Chaos:
    """One run of a scenario: its seed, the suite's scale, and the faults it injected."""

    seed: int
    scale: int
    """``TRADELAKE_CHAOS_SCALE``: market hours, rounds and runs grow with it."""
    injected: Counter[str] = field(default_factory=Counter)
    """Fault → how many times; printed at the end of the session, pass or fail."""


def check_lake(tape: Tape, lake: Path, gaps: list[Gap] | None = None) -> list[SymbolCheck]:
    """``verify.check`` of a local lake, read through the read-once view ``trades``.

    The gaps are the lake's own unless given (a lake filled from another world's delivery).
    """
    rows: dict[str, list[tuple[int, str]]] = {}
    for symbol, ts_ns, key in (
        connect(lake).sql("SELECT symbol, ts_ns, trade_key FROM trades").fetchall()
    ):
        rows.setdefault(symbol, []).append((ts_ns, key))
    return check(tape, rows, read_gaps(lake) if gaps is None else gaps)
