"""The rollups on AWS: every closed hour of every symbol, rolled up by Athena (ARCHITECTURE.md §6).

For every rollup (``analytics.ROLLUPS``: ``ohlcv_1m``, ``ohlcv_1h``), every hour and every symbol
that has trades in that hour (the partitions of the trades table say which), one ``Target``:

1. delete ``rollups/<name>/symbol=S/year=Y/month=M/day=D/hour=H/`` (UNLOAD wants an empty prefix,
   and a rerun must replace, not add to, the hour);
2. ``UNLOAD (SELECT <the rollup's columns but symbol> FROM (<sql/<name>.sql for that hour>))
   TO '<that prefix>' WITH (format = 'PARQUET', compression = 'SNAPPY')``, every column cast to
   its type in ``schema.ROLLUP_COLUMNS`` so that the files are what the Glue table says;
3. when the query SUCCEEDED, register the partition (an existing one is success).

So a rerun of an hour gives the same files' content and the same partition: the job is
idempotent, and rolling up the last ``lookback`` closed hours on every run absorbs trades that
land late (Firehose buffers up to five minutes; a reconnect's snapshot fills in the past). Before
anything else the job runs ``sql/trades_view.sql`` (``CREATE OR REPLACE VIEW trades``), so the
de-duplicating view every rollup reads exists and is the shipped one.

A query that ends FAILED or CANCELLED (or runs past its timeout, or cannot be started before the
deadline) is a ``RollupFailure``; the other targets still run, and the caller reports every
failure and fails (``RollupFailedError``). Targets run ``concurrency`` at a time: each one's
delete comes before its own UNLOAD, and partitions are registered once their queries succeeded.

This module is pure: Athena, S3 and Glue are behind ``QueryEngine``, ``Prefixes`` and
``RollupCatalog`` (adapters/athena.py, adapters/s3_state.py, adapters/glue_catalog.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

from tradelake.analytics import ROLLUPS, hour_params, trino_sql
from tradelake.catalog import ROLLUPS_PREFIX, Partition, PartitionCatalog, batched, register
from tradelake.schema import ROLLUP_COLUMNS

VIEW_QUERY = "trades_view"
SUCCEEDED = "SUCCEEDED"
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Target:
    """One rollup of one symbol's hour; ``hour`` is its start, UTC, on the hour."""

    name: str
    symbol: str
    hour: datetime

    @property
    def values(self) -> tuple[str, ...]:
        """Partition values in key order: symbol, year, month, day, hour."""
        h = self.hour
        return (self.symbol, f"{h.year:04d}", f"{h.month:02d}", f"{h.day:02d}", f"{h.hour:02d}")

    @property
    def prefix(self) -> str:
        """``rollups/<name>/symbol=S/year=YYYY/month=MM/day=DD/hour=HH/`` in the bucket."""
        symbol, year, month, day, hour = self.values
        return (
            f"{ROLLUPS_PREFIX}/{self.name}/symbol={symbol}/year={year}/month={month}/day={day}"
            f"/hour={hour}/"
        )

    def partition(self, bucket: str) -> Partition:
        return Partition(self.name, self.values, f"s3://{bucket}/{self.prefix}")

    def __str__(self) -> str:
        return f"{self.name} {self.symbol} {self.hour:%Y-%m-%dT%H}Z"


class QueryOutcome(NamedTuple):
    """How a query ended: ``state`` SUCCEEDED, FAILED, CANCELLED (or TIMED_OUT: stopped)."""

    query_id: str
    state: str
    reason: str = ""
    bytes_scanned: int = 0
    engine_ms: int = 0

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCEEDED


class QueryEngine(Protocol):
    """Athena: start a query, then wait for how it ended (never raises for a failed query)."""

    def start(self, sql: str) -> str: ...

    def wait(self, query_id: str) -> QueryOutcome: ...


class Prefixes(Protocol):
    """The data bucket: delete every object under a prefix, return how many there were."""

    def delete_prefix(self, prefix: str) -> int: ...


class RollupCatalog(PartitionCatalog, Protocol):
    """Glue: add partitions, and list the partitions of a table that match an expression."""

    def partition_values(self, table: str, expression: str) -> list[tuple[str, ...]]: ...


class RollupFailure(NamedTuple):
    """A target that was not rolled up (or the view), with what went wrong."""

    what: str
    """The target (``ohlcv_1m BTCUSD 2026-11-27T14Z``) or ``trades view``."""
    state: str
    """FAILED, CANCELLED, TIMED_OUT, NOT_STARTED, or a Glue error code."""
    reason: str
    query_id: str = ""

    def __str__(self) -> str:
        query = f" (query {self.query_id})" if self.query_id else ""
        return f"{self.what}: {self.state} {self.reason}".rstrip() + query


class RollupFailedError(RuntimeError):
    """Some rollups failed; the message names the first and the count."""


@dataclass
class RollupReport:
    """What a run did: targets written, failures, and what Athena and Glue reported."""

    written: list[Target] = field(default_factory=list)
    failures: list[RollupFailure] = field(default_factory=list)
    bytes_scanned: int = 0
    queries: int = 0
    created: int = 0
    existing: int = 0

    def count(self, outcome: QueryOutcome) -> None:
        self.queries += 1
        self.bytes_scanned += outcome.bytes_scanned

    def raise_for_failures(self) -> None:
        if self.failures:
            raise RollupFailedError(
                f"{len(self.failures)} rollup(s) failed, the first: {self.failures[0]}"
            )


def floor_hour(t: datetime) -> datetime:
    """The start of ``t``'s hour, in UTC (``t`` must be aware)."""
    if t.tzinfo is None:
        raise ValueError(f"{t.isoformat()} has no time zone")
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def closed_hours(now: datetime, lookback: int) -> list[datetime]:
    """The last ``lookback`` hours that have ended by ``now``, oldest first."""
    current = floor_hour(now)
    return [current - HOUR * n for n in range(lookback, 0, -1)]


def hours_between(start: datetime, end: datetime, now: datetime) -> list[datetime]:
    """Every hour from ``start``'s hour up to ``end`` (exclusive) that has ended by ``now``."""
    hour, last = floor_hour(start), min(end.astimezone(UTC), floor_hour(now))
    hours: list[datetime] = []
    while hour < last:
        hours.append(hour)
        hour += HOUR
    return hours


def hour_expression(hour: datetime) -> str:
    """A Glue GetPartitions expression selecting one hour's partitions (keys are strings)."""
    return (
        f"year = '{hour.year:04d}' AND month = '{hour.month:02d}' AND day = '{hour.day:02d}'"
        f" AND hour = '{hour.hour:02d}'"
    )


def unload_sql(target: Target, bucket: str) -> str:
    """The UNLOAD that writes ``target``'s hour as Parquet under its prefix."""
    inner = trino_sql(target.name, **hour_params(target.symbol, target.hour))
    inner = inner.strip().rstrip(";").rstrip()
    columns = ",\n  ".join(
        f'CAST("{c.name}" AS {c.type}) AS "{c.name}"' for c in ROLLUP_COLUMNS[target.name]
    )
    return (
        f"UNLOAD (\nSELECT\n  {columns}\nFROM (\n{inner}\n)\n)\n"
        f"TO 's3://{bucket}/{target.prefix}'\n"
        "WITH (format = 'PARQUET', compression = 'SNAPPY')"
    )


def ensure_view(engine: QueryEngine, report: RollupReport) -> bool:
    """``CREATE OR REPLACE VIEW trades`` from sql/trades_view.sql; False (a failure) if not."""
    outcome = engine.wait(engine.start(trino_sql(VIEW_QUERY)))
    report.count(outcome)
    if not outcome.succeeded:
        report.failures.append(
            RollupFailure("trades view", outcome.state, outcome.reason, outcome.query_id)
        )
    return outcome.succeeded


def targets_of(
    hours: Iterable[datetime],
    catalog: RollupCatalog,
    trades_table: str,
    names: Sequence[str] = ROLLUPS,
) -> list[Target]:
    """Every rollup of every symbol with a trades partition in each hour."""
    targets: list[Target] = []
    for hour in hours:
        found = catalog.partition_values(trades_table, hour_expression(hour))
        for symbol in sorted({values[0] for values in found}):
            targets += [Target(name, symbol, hour) for name in names]
    return targets


OnResult = Callable[[Target, QueryOutcome], None]


def run(
    targets: Sequence[Target],
    *,
    bucket: str,
    engine: QueryEngine,
    prefixes: Prefixes,
    catalog: RollupCatalog,
    report: RollupReport,
    concurrency: int = 4,
    out_of_time: Callable[[], bool] = lambda: False,
    on_result: OnResult | None = None,
) -> RollupReport:
    """Roll ``targets`` up, ``concurrency`` at a time (see the module docstring)."""
    for done, chunk in enumerate(batched(targets, concurrency)):
        if out_of_time():
            report.failures += [
                RollupFailure(str(t), "NOT_STARTED", "out of time before it could start")
                for t in targets[done * concurrency :]
            ]
            break
        started: list[tuple[Target, str]] = []
        for target in chunk:
            prefixes.delete_prefix(target.prefix)
            started.append((target, engine.start(unload_sql(target, bucket))))
        succeeded: list[Target] = []
        for target, query_id in started:
            outcome = engine.wait(query_id)
            report.count(outcome)
            if on_result is not None:
                on_result(target, outcome)
            if outcome.succeeded:
                succeeded.append(target)
            else:
                report.failures.append(
                    RollupFailure(str(target), outcome.state, outcome.reason, query_id)
                )
        added = register([t.partition(bucket) for t in succeeded], catalog)
        report.created += added.created
        report.existing += added.existing
        refused = {f.partition.location: f for f in added.failed}
        for target in succeeded:
            failure = refused.get(target.partition(bucket).location)
            if failure is None:
                report.written.append(target)
            else:
                report.failures.append(
                    RollupFailure(str(target), failure.code, f"partition: {failure.message}")
                )
    return report


def roll_up(
    hours: Sequence[datetime],
    *,
    bucket: str,
    trades_table: str,
    engine: QueryEngine,
    prefixes: Prefixes,
    catalog: RollupCatalog,
    concurrency: int = 4,
    out_of_time: Callable[[], bool] = lambda: False,
    on_result: OnResult | None = None,
) -> RollupReport:
    """The whole job for ``hours``: the view, then every rollup of every symbol in them.

    Never raises for a failed query: the report holds the failures (``raise_for_failures``).
    Without the view nothing can be rolled up, so its failure ends the run.
    """
    report = RollupReport()
    if not ensure_view(engine, report):
        return report
    return run(
        targets_of(hours, catalog, trades_table),
        bucket=bucket,
        engine=engine,
        prefixes=prefixes,
        catalog=catalog,
        report=report,
        concurrency=concurrency,
        out_of_time=out_of_time,
        on_result=on_result,
    )
