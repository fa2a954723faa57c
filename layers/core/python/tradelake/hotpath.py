"""The compiled hot path (``_hotpath.c``), when it is built for this interpreter.

Its functions take only the common, plain case (a live incremental frame as Phemex writes it,
rows that are all good, trades of printable ASCII) and return None for anything else; the
callers then run the pure-Python code, which stays the reference: tests/unit/test_hotpath.py
checks that both give the same on the same input. A live frame's trades come with their JSON
lines, rendered while the values were at hand (``Output.lines``), which the Firehose sink packs
as they are. Without the module (a platform it was not built for), everything runs in Python,
only slower; ``TRADELAKE_PURE_PYTHON=1`` asks for that.
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType

from tradelake.model import BUY, EARLIEST_NS, INCREMENTAL, LATEST_NS, SELL, Fill, Trade

log = logging.getLogger(__name__)


def bind(module: ModuleType, allocate: bool = sys.version_info < (3, 14)) -> None:
    """Give the compiled module the types and values it makes trades of. ``allocate``: make them
    with the types' allocator, as ``tuple.__new__`` does before CPython 3.14; from 3.14 a tuple
    caches its hash, which only tuple's own constructor sets up, so that is called instead."""
    module.bind(Fill, Trade, BUY, SELL, INCREMENTAL, EARLIEST_NS, LATEST_NS, allocate)


def _load() -> ModuleType | None:
    if os.environ.get("TRADELAKE_PURE_PYTHON"):
        return None
    try:
        from tradelake import _hotpath
    except ImportError as exc:
        # Loud: the ingest function is sized for the compiled path (128 MB needs it).
        log.warning("no compiled hot path for this interpreter (%s): pure Python, slower", exc)
        return None
    bind(_hotpath)
    return _hotpath


compiled = _load()
"""``tradelake._hotpath``, bound to the model's types; None when absent or turned off."""
