"""S3 ObjectCreated → the object's Glue partition (ARCHITECTURE.md §1, §6).

Delivery is at least once and in any order: S3 repeats notifications, and a failed invocation is
retried by Lambda's asynchronous invoke. Registration is idempotent (an existing partition counts
as success), so both are harmless. A key that is not a partition path is skipped with a warning
and ``SkippedKeys``; a partition Glue refuses fails the invocation so that it is retried.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tradelake.adapters.glue_catalog import GlueCatalog
from tradelake.catalog import PartitionsNotRegisteredError, default_routes, read_event, register
from tradelake.config import PartitionsConfig

SERVICE = "partitions"
logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
tracer = Tracer(service=SERVICE)

config = PartitionsConfig.from_env()
routes = default_routes(config.trades_table)
glue_catalog = GlueCatalog(boto3.client("glue"), config.glue_database)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext, *, glue: Any = None) -> dict[str, int]:
    catalog = glue_catalog if glue is None else GlueCatalog(glue, config.glue_database)
    found = read_event(event, routes)
    for skipped in found.skipped:
        logger.warning("not a partition path", extra={"key": skipped.key, "reason": skipped.reason})
    metrics.add_metric(name="SkippedKeys", unit=MetricUnit.Count, value=len(found.skipped))
    added = register(found.partitions, catalog)
    metrics.add_metric(name="PartitionsCreated", unit=MetricUnit.Count, value=added.created)
    metrics.add_metric(name="PartitionsExisting", unit=MetricUnit.Count, value=added.existing)
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
