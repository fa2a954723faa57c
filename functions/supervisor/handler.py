"""Keep exactly one ingest execution per shard running while ingestion is on (ARCHITECTURE.md §1).

Woken every five minutes and when an ingest execution ends FAILED, TIMED_OUT or ABORTED; the
decision does not depend on which (see ``tradelake.supervise``), except that a shard failing
again and again is left to the heartbeat, and that an execution ending badly is told to the
alarm topic (``ALARM_TOPIC_ARN``) once per shard and hour, with what was done about it. The
shards are computed from ``TRADELAKE_SYMBOLS`` at cold start (``tradelake.shards``). Two
invocations at the same moment start one execution per shard between them: execution names
are unique.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from tradelake.adapters.emf_metrics import count
from tradelake.adapters.sfn_control import StepFunctionsIngestControl
from tradelake.adapters.sns_topic import SnsTopic
from tradelake.config import SupervisorConfig
from tradelake.shards import shards
from tradelake.supervise import (
    Decision,
    Ended,
    Start,
    alert,
    backing_off,
    ended_of,
    first_in_the_hour,
    outcome,
    summary,
    supervise,
    trigger_of,
)

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
    "sns": boto3.client("sns"),
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
    sns: Any = None,
    wall_ns: Callable[[], int] = time.time_ns,
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
    now_ns = wall_ns()
    ended = ended_of(event, now_ns)
    hold: frozenset[int] = frozenset()
    told = False
    if ended is not None:
        failures = [*control.ended_badly(), ended]
        hold = backing_off(failures, now_ns)
        told = first_in_the_hour(ended, failures)
    try:
        decisions: list[Decision] = supervise(control, SHARDS, hold)
    except Exception as exc:
        if ended is not None and told:  # the failure that woke us is not lost with this one
            tell(sns, ended, f"The supervisor failed to restart it: {exc}.")
        raise
    if ended is not None and told:
        tell(sns, ended, outcome(decisions, ended))
    count(metrics, "IngestStarted", sum(isinstance(d, Start) for d in decisions))
    result = {"shards": len(SHARDS), "decisions": [summary(d) for d in decisions]}
    logger.info("supervised", extra={**result, "trigger": trigger_of(event), "told": told})
    return result


def tell(sns: Any, ended: Ended, what_was_done: str) -> None:
    """Publish the message about ``ended`` to the alarm topic.

    STAGE and ALARM_TOPIC_ARN are read here, not at cold start: only an execution that ended
    badly needs them (the template sets both: tests/infra), and a missing one fails this
    invocation with its name, which the supervisor-errors alarm reports.
    """
    message = alert(os.environ["STAGE"], ended, what_was_done)
    SnsTopic(sns or clients["sns"], os.environ["ALARM_TOPIC_ARN"]).publish(message)
