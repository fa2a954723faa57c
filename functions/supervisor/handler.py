"""Keep exactly one ingest execution per shard running while ingestion is on (ARCHITECTURE.md §1).

Woken every five minutes and when an ingest execution ends FAILED, TIMED_OUT or ABORTED; the
decision does not depend on which (see ``tradelake.supervise``). The shards are computed from
``TRADELAKE_SYMBOLS`` at cold start (``tradelake.shards``). Two invocations at the same moment
start one execution per shard between them: execution names are unique.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tradelake.adapters.emf_metrics import count
from tradelake.adapters.sfn_control import StepFunctionsIngestControl
from tradelake.config import SupervisorConfig
from tradelake.shards import shards
from tradelake.supervise import Start, summary, supervise, trigger_of

SERVICE = "supervisor"
logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
tracer = Tracer(service=SERVICE)

config = SupervisorConfig.from_env()
SHARDS = shards(config.symbols, config.symbols_per_shard)
clients = {
    "sfn": boto3.client("stepfunctions"),
    "ssm": boto3.client("ssm"),
    "s3": boto3.client("s3"),
}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(
    event: dict[str, Any],
    context: LambdaContext,
    *,
    sfn: Any = None,
    ssm: Any = None,
    s3: Any = None,
) -> dict[str, Any]:
    control = StepFunctionsIngestControl(
        sfn or clients["sfn"],
        ssm or clients["ssm"],
        s3 or clients["s3"],
        state_machine_arn=config.state_machine_arn,
        switch_parameter=config.switch_parameter,
        bucket=config.data_bucket,
        cursor_key=config.cursor_key,
    )
    decisions = supervise(control, SHARDS)
    count(metrics, "IngestStarted", sum(isinstance(d, Start) for d in decisions))
    result = {"shards": len(SHARDS), "decisions": [summary(d) for d in decisions]}
    logger.info("supervised", extra={**result, "trigger": trigger_of(event)})
    return result
