"""Which catalog partition a new lake object belongs to, and registering it (ARCHITECTURE §1, §6).

Writers put every object under a Hive-style partition path::

    trades/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/<file>
    rollups/<name>/symbol=BTCUSD/year=2026/month=11/day=27/hour=14/<file>

A table route maps a key prefix to a table: ``trades`` goes to the trades table (``TRADES_TABLE``,
``trades_stored`` on AWS). Rollups are not routed: the rollup job registers each hour's partition
itself once its query has succeeded (``tradelake.rollup``), so S3 notifies for ``trades/`` only.
The levels after the prefix are the route's partition keys, in the table's order
(``schema.PARTITION_KEYS``), each checked: a symbol of Phemex's shape, a four-digit year, month
01–12, day 01–31 forming a real date, hour 00–23, all in ASCII. Then exactly one file name
follows, which must not be hidden or temporary (``.x``, ``_x``, ``*.tmp``, ``*$folder$``):
readers skip those too.

Anything else — another prefix, missing or extra levels, a bad value, a temporary file, a
malformed notification — is not a partition: it is reported as ``Skipped`` with the reason, never
raised, because a notification that can never succeed must not be retried forever.

Delivery: S3 notifications arrive at least once and in any order, so ``read_event`` deduplicates
the partitions of one event and registration treats "already exists" as success. Registering a
partition is idempotent, so a failed invocation can simply run again.

This module is pure: the catalog (Glue, or a local one) is reached through ``PartitionCatalog``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import unquote_plus

from tradelake.markets import SYMBOL_PATTERN
from tradelake.partitions import TRADES_PREFIX
from tradelake.schema import PARTITION_KEYS

PARTITION_KEY_NAMES: tuple[str, ...] = tuple(c.name for c in PARTITION_KEYS)

ROLLUPS_PREFIX = "rollups"

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_NAME_SEGMENT = re.compile(r"[a-z][a-z0-9_]{0,99}")
"""A prefix segment that becomes part of a table name: Glue table names are lower case."""


S3_KEY_BYTES = 1024
"""The longest S3 key (UTF-8): a notification with a longer one did not come from S3."""
SHOWN_KEY_CHARS = 300
"""A skipped key is reported cut to this many characters, so that one key cannot flood a log."""

_VALUE_PATTERNS: Mapping[str, re.Pattern[str]] = {
    # Phemex's shape: ``btcusd`` or ``..`` in a key was not written by the pipeline, and
    # registering it would show a symbol that is not.
    "symbol": SYMBOL_PATTERN,
    "year": re.compile(r"[0-9]{4}"),
    "month": re.compile(r"0[1-9]|1[0-2]"),
    "day": re.compile(r"0[1-9]|[12][0-9]|3[01]"),
    "hour": re.compile(r"[01][0-9]|2[0-3]"),
}
_OTHER_VALUE = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
"""Values of partition keys this module does not know yet (a future rollup's own keys)."""


class Route(NamedTuple):
    """Objects under ``prefix`` belong to ``table``, partitioned by ``keys`` in that order.

    A ``{name}`` segment in the prefix matches one lower-case path segment and can be used in
    the table name: ``Route("rollups/{name}", "rollups_{name}")``.
    """

    prefix: str
    table: str
    keys: tuple[str, ...] = PARTITION_KEY_NAMES


def default_routes(trades_table: str) -> tuple[Route, ...]:
    """``trades/`` → the trades table (rollups register their own partitions, see above)."""
    return (Route(TRADES_PREFIX, trades_table),)


class Partition(NamedTuple):
    """A partition of ``table`` with its values in key order and where its files live."""

    table: str
    values: tuple[str, ...]
    location: str
    """The partition directory, ending in ``/``: ``s3://bucket/trades/symbol=…/hour=14/``."""


class Skipped(NamedTuple):
    """An object (or notification record) that is not a partition, and why."""

    key: str
    reason: str


class NotAPartitionError(ValueError):
    """The key is not a partition path of any route; the message says why."""


def partition_of(key: str, routes: Sequence[Route], root: str = "") -> Partition:
    """The partition of the object at ``key`` (already URL-decoded), located under ``root``.

    Raises ``NotAPartitionError`` with the reason when the key is not a partition path.
    """
    segments = key.split("/")
    for route in routes:
        captured = _match_prefix(route.prefix, segments)
        if captured is not None:
            return _partition(route, captured, segments, root)
    raise NotAPartitionError("not under a known table prefix")


def _match_prefix(prefix: str, segments: Sequence[str]) -> dict[str, str] | None:
    """The placeholders captured when ``segments`` start with ``prefix``, or None."""
    pattern = prefix.split("/")
    if len(segments) < len(pattern):
        return None
    captured: dict[str, str] = {}
    for want, got in zip(pattern, segments, strict=False):
        placeholder = _PLACEHOLDER.fullmatch(want)
        if placeholder is None:
            if want != got:
                return None
        elif _NAME_SEGMENT.fullmatch(got):
            captured[placeholder.group(1)] = got
        else:
            return None
    return captured


def _partition(
    route: Route, captured: Mapping[str, str], segments: Sequence[str], root: str
) -> Partition:
    depth = route.prefix.count("/") + 1
    levels = segments[depth:-1]
    if len(levels) != len(route.keys):
        raise NotAPartitionError(
            f"expected {len(route.keys)} partition levels ({'/'.join(route.keys)}) "
            f"then a file name, found {len(levels)} levels"
        )
    values: list[str] = []
    for name, level in zip(route.keys, levels, strict=True):
        key, sep, value = level.partition("=")
        if not sep or key != name:
            raise NotAPartitionError(f"level {level!r} is not {name}=…")
        if not _VALUE_PATTERNS.get(name, _OTHER_VALUE).fullmatch(value):
            raise NotAPartitionError(f"bad {name} {value!r}")
        values.append(value)
    _check_date(dict(zip(route.keys, values, strict=True)))
    _check_file_name(segments[-1])
    prefix = "/".join(segments[: depth + len(levels)])
    return Partition(route.table.format(**captured), tuple(values), f"{root}{prefix}/")


def _check_date(values: Mapping[str, str]) -> None:
    if {"year", "month", "day"} <= values.keys():
        try:
            date(int(values["year"]), int(values["month"]), int(values["day"]))
        except ValueError:
            raise NotAPartitionError(
                f"no such date {values['year']}-{values['month']}-{values['day']}"
            ) from None


def _check_file_name(name: str) -> None:
    if not name:
        raise NotAPartitionError("a directory marker, not a file")
    if name.startswith((".", "_")) or name.endswith((".tmp", "$folder$")):
        raise NotAPartitionError(f"hidden or temporary file {name!r}")


class EventPartitions(NamedTuple):
    """What one S3 notification holds: distinct partitions (first-seen order) and the rest."""

    partitions: tuple[Partition, ...]
    skipped: tuple[Skipped, ...]


def read_event(event: Any, routes: Sequence[Route]) -> EventPartitions:
    """The partitions of the objects an S3 ``ObjectCreated`` notification announces.

    Keys arrive URL-encoded (``%3D`` for ``=``, ``+`` for a space) and are decoded here, once
    (``%253D`` is the text ``%3D``). Never raises: a record that is not an object creation, or
    whose key is not a partition path, is skipped with its reason; a key longer than S3 allows
    is skipped too, shown cut. ``s3:TestEvent`` (no ``Records``) holds nothing.
    """
    partitions: dict[Partition, None] = {}
    skipped: list[Skipped] = []
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        records = []
    for index, record in enumerate(records):
        try:
            name = record.get("eventName", "")
            bucket = record["s3"]["bucket"]["name"]
            raw_key = record["s3"]["object"]["key"]
        except (AttributeError, KeyError, TypeError):
            skipped.append(Skipped(f"Records[{index}]", "not an S3 notification record"))
            continue
        if not (isinstance(bucket, str) and bucket and isinstance(raw_key, str)):
            skipped.append(Skipped(f"Records[{index}]", "bucket or key is not a string"))
            continue
        key = unquote_plus(raw_key)
        size = len(key.encode("utf-8", "replace"))
        if size > S3_KEY_BYTES:
            shown = f"{key[:SHOWN_KEY_CHARS]}…"
            skipped.append(Skipped(shown, f"a key of {size} bytes: S3 keys have ≤ {S3_KEY_BYTES}"))
            continue
        if not (isinstance(name, str) and name.startswith("ObjectCreated:")):
            skipped.append(Skipped(key, f"event {name!r} is not an object creation"))
            continue
        try:
            partitions[partition_of(key, routes, f"s3://{bucket}/")] = None
        except NotAPartitionError as exc:
            skipped.append(Skipped(key, str(exc)))
    return EventPartitions(tuple(partitions), tuple(skipped))


class Failure(NamedTuple):
    """A partition the catalog refused, with its error code and message."""

    partition: Partition
    code: str
    message: str


class Added(NamedTuple):
    """What a catalog did with a set of partitions: every one is in exactly one bucket."""

    created: int
    existing: int
    failed: tuple[Failure, ...]


class PartitionCatalog(Protocol):
    """The catalog port: Glue on AWS. Adding a partition that exists counts as ``existing``."""

    def add_partitions(self, table: str, partitions: Sequence[Partition]) -> Added: ...


class PartitionsNotRegisteredError(RuntimeError):
    """Some partitions could not be registered; the invocation fails so that it is retried."""


def register(partitions: Iterable[Partition], catalog: PartitionCatalog) -> Added:
    """Add ``partitions`` to the catalog, one call per table, and total what happened."""
    by_table: dict[str, list[Partition]] = {}
    for p in partitions:
        by_table.setdefault(p.table, []).append(p)
    created = existing = 0
    failed: list[Failure] = []
    for table, group in by_table.items():
        added = catalog.add_partitions(table, group)
        created += added.created
        existing += added.existing
        failed.extend(added.failed)
    return Added(created, existing, tuple(failed))


T = TypeVar("T")


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (API limits: Glue takes 100)."""
    if size < 1:
        raise ValueError(f"batch size must be positive, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
