"""Partitions present in S3 but missing from the catalog, found and registered (issue 8, item 3).

S3 invokes the partitions function asynchronously; an event that still fails after Lambda's two
retries goes to the on-failure queue (resources/storage.yml), and its partition stays unregistered
until someone registers it. This module is that someone: it lists the objects under each route's
prefix, turns every key into its partition with exactly the function's rules
(``tradelake.catalog.partition_of``: the same skips, the same locations), asks the catalog which
partitions it already has, and registers the missing ones with ``tradelake.catalog.register``.
Registration is idempotent, so a run racing the function, or a second run, does no harm.

Two callers:

- ``tradelake repair-partitions --stage S`` from a laptop: the whole history by default,
  ``--since DAY`` for a window, ``--dry-run`` to only print what is missing;
- the partitions function itself, once a day (a ``Scheduled Event``): the last few days, which
  covers every event dropped since the run before with margin and keeps the run short.

Only keys ending in ``.parquet`` count, like the bucket's notification filter: what the function
would never have been told about is not "missing". Only ``trades/`` is routed (``gaps/`` is one
unpartitioned table). boto3 is imported by the CLI part only; clients are passed in.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from tradelake.catalog import (
    PARTITION_KEY_NAMES,
    Added,
    NotAPartitionError,
    Partition,
    PartitionCatalog,
    Route,
    Skipped,
    partition_of,
    register,
)

NOTIFIED_SUFFIX = ".parquet"
"""The suffix rule of the bucket's notification to the partitions function (storage.yml)."""


class RegisteredCatalog(PartitionCatalog, Protocol):
    """A catalog that can also list a table's partitions (``GlueCatalog``)."""

    def partition_values(
        self, table: str, expression: str | None = None
    ) -> list[tuple[str, ...]]: ...


class Reconciled(NamedTuple):
    """What one run found and did."""

    found: int
    """Distinct partitions with at least one notified object in S3 (in the window)."""
    missing: tuple[Partition, ...]
    """Those the catalog did not have."""
    added: Added
    """What registering ``missing`` did (all zero on a dry run)."""
    skipped: tuple[Skipped, ...]
    """Keys under a route's prefix that are not a partition path."""


def listing_prefixes(
    route: Route, since: date | None, today: date, s3: Any, bucket: str
) -> list[str]:
    """The S3 prefixes to list for ``route``: all of it, or one per symbol and day since ``since``.

    The per-day prefixes only narrow the listing; every key found is still checked by
    ``partition_of``. A route whose keys are not symbol/year/month/day/… is listed whole.
    """
    if "{" in route.prefix:
        raise ValueError(f"cannot list a templated route prefix {route.prefix!r}")
    base = f"{route.prefix}/"
    if since is None or route.keys[:4] != PARTITION_KEY_NAMES[:4] or route.keys[0] != "symbol":
        return [base]
    symbols: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base, Delimiter="/")
    for page in pages:
        symbols += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    days = [since + timedelta(days=n) for n in range((today - since).days + 1)]
    return [f"{s}year={d:%Y}/month={d:%m}/day={d:%d}/" for s in symbols for d in days]


def keys_under(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            yield item["Key"]


def partitions_in_s3(
    s3: Any, bucket: str, routes: Sequence[Route], since: date | None, today: date
) -> tuple[list[Partition], list[Skipped]]:
    """The distinct partitions of the notified objects under the routes, and the other keys."""
    found: dict[Partition, None] = {}
    skipped: list[Skipped] = []
    for route in routes:
        for prefix in listing_prefixes(route, since, today, s3, bucket):
            for key in keys_under(s3, bucket, prefix):
                if not key.endswith(NOTIFIED_SUFFIX):
                    continue
                try:
                    found[partition_of(key, routes, f"s3://{bucket}/")] = None
                except NotAPartitionError as exc:
                    skipped.append(Skipped(key, str(exc)))
    return list(found), skipped


def reconcile(
    s3: Any,
    catalog: RegisteredCatalog,
    bucket: str,
    routes: Sequence[Route],
    *,
    since: date | None = None,
    today: date | None = None,
    dry_run: bool = False,
) -> Reconciled:
    """Register every partition of ``bucket`` (since ``since``) the catalog does not have."""
    today = today or datetime.now(UTC).date()
    found, skipped = partitions_in_s3(s3, bucket, routes, since, today)
    known: dict[str, set[tuple[str, ...]]] = {}
    for table in sorted({p.table for p in found}):
        known[table] = set(catalog.partition_values(table))
    missing = tuple(p for p in found if p.values not in known[p.table])
    added = Added(0, 0, ()) if dry_run else register(missing, catalog)
    return Reconciled(len(found), missing, added, tuple(skipped))


# --- `tradelake repair-partitions` -------------------------------------------------------------


def day_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date, e.g. 2026-11-27") from None


def add_parser(commands: Any) -> None:
    """``tradelake repair-partitions``, added to the CLI's subcommands."""
    from tradelake.backfill import stage_arg

    repair = commands.add_parser(
        "repair-partitions",
        help="register the Glue partitions of a deployed stage that S3 has but Glue lacks",
        description="List the partitions under trades/ in the stage's bucket, compare with the "
        "Glue trades table and register the missing ones (what the partitions function does "
        "once a day for the last days): needs AWS credentials for the stage's account.",
    )
    repair.add_argument("--stage", type=stage_arg, required=True, help="e.g. prod")
    repair.add_argument("--region", help="default: the AWS configuration's region")
    repair.add_argument(
        "--since", type=day_arg, metavar="DAY", help="only days from DAY on (default: all)"
    )
    repair.add_argument(
        "--bucket", help="the data bucket, when the stage adopted one (existingDataBucket)"
    )
    repair.add_argument("--dry-run", action="store_true", help="only print what is missing")


def repair_command(args: argparse.Namespace, session: Any = None) -> int:
    """Run it; ``session`` (a boto3 Session) is for tests."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from tradelake.adapters.glue_catalog import GlueCatalog
    from tradelake.catalog import default_routes
    from tradelake.config import RollupConfig

    session = session or boto3.session.Session(region_name=args.region)
    if not session.region_name:
        return _fail("no AWS region: pass --region or set AWS_REGION")
    try:
        account = session.client("sts").get_caller_identity()["Account"]
        # The stage's names as serverless.yml gives them (the same as `tradelake backfill`).
        names = RollupConfig.for_stage(args.stage, account, session.region_name)
        bucket = args.bucket or names.data_bucket
        result = reconcile(
            session.client("s3"),
            GlueCatalog(session.client("glue"), names.glue_database),
            bucket,
            default_routes(names.trades_table),
            since=args.since,
            dry_run=args.dry_run,
        )
    except (BotoCoreError, ClientError) as exc:
        return _fail(str(exc))
    for partition in result.missing:
        print(f"  missing: {partition.location}", file=sys.stderr)
    for failure in result.added.failed:
        print(
            f"tradelake repair-partitions: not registered: {failure.partition.location}: "
            f"{failure.code} {failure.message}".rstrip(),
            file=sys.stderr,
        )
    done = (
        f"would register {len(result.missing)}"
        if args.dry_run
        else (f"registered {result.added.created}")
    )
    print(
        f"{result.found} partition(s) in s3://{bucket}/, {len(result.missing)} missing in "
        f"{names.glue_database}: {done}"
        f", {len(result.added.failed)} failed, {len(result.skipped)} key(s) not a partition",
        file=sys.stderr,
    )
    return 1 if result.added.failed else 0


def _fail(message: str) -> int:
    print(f"tradelake repair-partitions: {message}", file=sys.stderr)
    return 1
