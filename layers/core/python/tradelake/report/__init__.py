"""``tradelake report``: the lake as one HTML page to look at, offline.

Per symbol: price over time coloured by taker side, OHLCV candles with buy and sell volume,
completeness (trades per hour and the declared gaps on the same time axis, with their reasons)
and the original design's heat map of the 50 most frequent prices by side. ``data.py`` reads it
all through the shared SQL; ``page.py`` writes the self-contained page that draws it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import duckdb

from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.lake_files import write_atomically
from tradelake.report.data import load
from tradelake.report.page import render

REPORT_NAME = "report.html"


class EmptyLakeError(ValueError):
    """A lake without a trade: there is nothing to draw."""


class Written(NamedTuple):
    path: Path
    size: int
    symbols: int


def write_report(lake: Path, out: Path) -> Written:
    """Write the report of ``lake`` to ``out`` atomically: a reader never sees half a page."""
    data = load(connect(lake), lake)
    if not data["symbols"]:
        raise EmptyLakeError(f"{lake}/ holds no trades: capture some first (or tradelake demo)")
    page = render(data).encode()
    write_atomically(out, page)
    return Written(out, len(page), len(data["symbols"]))


def report_command(lake: Path, out: Path | None) -> int:
    """``tradelake report``: one line on stdout saying where the page is, or one error line."""
    from tradelake.analytics_cli import no_lake

    if no_lake(lake, "report"):
        return 1
    try:
        written = write_report(lake, out or lake / REPORT_NAME)
    except (EmptyLakeError, duckdb.Error, OSError) as exc:
        print(f"tradelake report: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(describe(written))
    return 0


def describe(written: Written) -> str:
    """Where the report is, as a link a terminal opens with a click."""
    return (
        f"{written.path} ({written.symbols} symbols, {written.size / 1024:,.0f} KiB, one file "
        f"that works offline): open {written.path.absolute().as_uri()}"
    )
