"""Split the symbols into shards of at most ``size`` (one websocket each), stably.

Phemex takes about 20 subscriptions per connection, so the ``symbols`` deploy parameter is cut
into shards, each captured by its own ingest execution (``ingest-<shard>-<generation>``) with its
own cursor checkpoint (:func:`cursor_key`). The assignment is a pure function of the *set* of
symbols: their order and duplicates in the parameter do not matter.

- ``shard_of(symbol, count)`` is rendezvous hashing: the shard ``i < count`` whose
  ``sha256("<i>:<symbol>")`` is smallest. It depends on the symbol and ``count`` only, so adding
  or removing a symbol moves no other symbol as long as the shard count stays the same.
- ``shard_count`` is the smallest ``count ≥ ceil(n / size)`` for which no shard holds more than
  ``size`` symbols (hashing does not spread evenly, so sometimes one more shard is needed).
- When the count does change (the list grew past a multiple of ``size``, or a shard would
  overflow), rendezvous hashing moves symbols only *into the new shards*: no symbol moves
  between two shards that exist before and after. A moved symbol starts in its new shard
  without a cursor (its position stays in the old shard's checkpoint), so it is captured from
  a fresh snapshot, like a newly added symbol.

The same function is implemented in JavaScript in ``.serverless_plugins/shards.js``, which sets
the ingest function's reserved concurrency to the shard count at package time;
tests/infra/test_shards_plugin.py checks that the two agree.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

SHARD_SIZE = 20
"""Symbols per websocket connection: Phemex allows about 20 subscriptions per connection."""


def shard_of(symbol: str, count: int) -> int:
    """The shard of ``symbol`` among ``count`` shards (rendezvous hashing)."""
    if count < 1:
        raise ValueError(f"the shard count must be at least 1, not {count}")
    return min(range(count), key=lambda i: hashlib.sha256(f"{i}:{symbol}".encode()).hexdigest())


def _split(symbols: list[str], count: int) -> list[list[str]]:
    shards: list[list[str]] = [[] for _ in range(count)]
    for symbol in symbols:
        shards[shard_of(symbol, count)].append(symbol)
    return shards


def shard_count(symbols: Iterable[str], size: int = SHARD_SIZE) -> int:
    """The smallest count ≥ ceil(n / size) at which every shard holds at most ``size`` symbols."""
    unique = sorted(set(symbols))
    if size < 1:
        raise ValueError(f"the shard size must be at least 1, not {size}")
    count = max(1, math.ceil(len(unique) / size))
    while max(map(len, _split(unique, count))) > size:
        count += 1
    return count


def shards(symbols: Iterable[str], size: int = SHARD_SIZE) -> tuple[tuple[str, ...], ...]:
    """The symbols of every shard, each sorted; shard ``i`` is at index ``i`` (none is empty
    unless hashing left it so, which only happens when a shard had to be added)."""
    unique = sorted(set(symbols))
    return tuple(tuple(s) for s in _split(unique, shard_count(unique, size)))


def cursor_key(base: str, shard: int) -> str:
    """Shard 0 → ``base`` (the checkpoint from before shards), 2 → ``_state/cursor-2.json``."""
    if shard == 0:
        return base
    stem, dot, ext = base.rpartition(".")
    return f"{stem}-{shard}.{ext}" if dot and "/" not in ext else f"{base}-{shard}"
