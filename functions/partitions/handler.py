"""S3 ObjectCreated → the object's Glue partition (ARCHITECTURE.md §1, §6); once a day, a reconcile.

Delivery is at least once and in any order: S3 repeats notifications, and a failed invocation is
retried by Lambda's asynchronous invoke. Registration is idempotent (an existing partition counts
as success), so both are harmless. A key that is not a partition path is skipped with a warning
and ``SkippedKeys``; a partition Glue refuses fails the invocation so that it is retried. An event
still failing after Lambda's two retries goes to the on-failure queue (resources/storage.yml).

A ``Scheduled Event`` (the daily EventBridge schedule in serverless.yml) runs
``tradelake.reconcile`` instead: the partitions of the last ``RECONCILE_DAYS`` days present in S3
but missing in Glue — a dropped event's — are registered, with ``PartitionsRepaired``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tradelake.adapters.emf_metrics import count
from tradelake.adapters.glue_catalog import GlueCatalog
from tradelake.catalog import PartitionsNotRegisteredError, default_routes, read_event, register
from tradelake.config import PartitionsConfig
from tradelake.reconcile import reconcile

SERVICE = "partitions"
logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
tracer = Tracer(service=SERVICE)

config = PartitionsConfig.from_env()
routes = default_routes(config.trades_table)
glue_catalog = GlueCatalog(boto3.client("glue"), config.glue_database)
s3_client = boto3.client("s3")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(
    event: dict[str, Any], context: LambdaContext, *, glue: Any = None, s3: Any = None
) -> dict[str, int]:
    catalog = glue_catalog if glue is None else GlueCatalog(glue, config.glue_database)
    if event.get("detail-type") == "Scheduled Event":
        return _reconcile(catalog, s3_client if s3 is None else s3)
    found = read_event(event, routes)
    for skipped in found.skipped:
        logger.warning("not a partition path", extra={"key": skipped.key, "reason": skipped.reason})
    count(metrics, "SkippedKeys", len(found.skipped))
    added = register(found.partitions, catalog)
    for failure in added.failed:
        logger.error(
            "partition not registered",
            extra={
                "location": failure.partition.location,
                "code": failure.code,
                "error": failure.message,
            },
        )
    if added.failed:
        first = added.failed[0]
        raise PartitionsNotRegisteredError(
            f"{len(added.failed)} partition(s) not registered, the first "
            f"{first.partition.location}: {first.code} {first.message}".rstrip()
        )
    result = {"created": added.created, "existing": added.existing, "skipped": len(found.skipped)}
    logger.info("partitions registered", extra={"partitions": result})
    return result


def _reconcile(catalog: GlueCatalog, s3: Any) -> dict[str, int]:
    """The daily run: register what S3 has and Glue lacks over the last days; fail if any fails."""
    today = datetime.now(UTC).date()
    since = today - timedelta(days=config.reconcile_days - 1)
    result = reconcile(s3, catalog, config.data_bucket, routes, since=since, today=today)
    for partition in result.missing:
        logger.warning("partition was missing", extra={"location": partition.location})
    count(metrics, "PartitionsRepaired", result.added.created)
    if result.added.failed:
        first = result.added.failed[0]
        raise PartitionsNotRegisteredError(
            f"reconcile: {len(result.added.failed)} partition(s) not registered, the first "
            f"{first.partition.location}: {first.code} {first.message}".rstrip()
        )
    summary = {
        "found": result.found,
        "missing": len(result.missing),
        "created": result.added.created,
        "existing": result.added.existing,
    }
    logger.info("partitions reconciled", extra={"since": since.isoformat(), "result": summary})
    return summary
