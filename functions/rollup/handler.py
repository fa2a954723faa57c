"""Every hour: roll up the last closed hours with Athena (ARCHITECTURE.md §1, §6).

Ensures the ``trades`` view, then for each of the last ``ROLLUP_LOOKBACK_HOURS`` closed hours and
each symbol with trades in it, replaces ``rollups/<name>/…/hour=HH/`` with an UNLOAD of that
rollup and registers the partition (``tradelake.rollup``). Every run redoes the look-back
window, so a failed or late hour is done again by the next run; a query that fails or is
cancelled is logged, counted (``RollupFailures``) and fails the invocation after the others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tradelake.adapters.athena import roll_up_stack
from tradelake.adapters.emf_metrics import count
from tradelake.config import RollupConfig
from tradelake.rollup import closed_hours

SERVICE = "rollup"
logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
tracer = Tracer(service=SERVICE)

config = RollupConfig.from_env()
clients = {"athena": boto3.client("athena"), "s3": boto3.client("s3"), "glue": boto3.client("glue")}
MARGIN_S = 30.0
"""No new queries once less than a query's timeout and this remain before the Lambda deadline:
the queries already started must be waited for (or stopped) and reported first."""


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(
    event: dict[str, Any] | None,
    context: LambdaContext,
    *,
    athena: Any = None,
    s3: Any = None,
    glue: Any = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    hours = closed_hours(now or datetime.now(UTC), config.lookback_hours)
    try:
        report = roll_up_stack(
            config,
            hours,
            athena=athena or clients["athena"],
            s3=s3 or clients["s3"],
            glue=glue or clients["glue"],
            out_of_time=lambda: (
                context.get_remaining_time_in_millis() < (config.query_timeout_s + MARGIN_S) * 1000
            ),
        )
    except Exception:  # an AWS call refused (not a failed query): as loud as a failed rollup
        logger.exception("rollup run failed")
        count(metrics, "RollupFailures", 1)
        raise
    count(metrics, "RollupFailures", len(report.failures))
    for failure in report.failures:
        logger.error(
            "rollup failed",
            extra={
                "target": failure.what,
                "state": failure.state,
                "reason": failure.reason,
                "query_id": failure.query_id,
            },
        )
    result = {
        "hours": [f"{h:%Y-%m-%dT%H}Z" for h in hours],
        "written": len(report.written),
        "failed": len(report.failures),
        "queries": report.queries,
        "bytes_scanned": report.bytes_scanned,
        "partitions_created": report.created,
    }
    logger.info("rolled up", extra={"rollup": result, "targets": [str(t) for t in report.written]})
    report.raise_for_failures()
    return result
