"""One step of the ingest workflow: capture Phemex trades into Firehose until the deadline.

In ``{"shard": int, "cursor": <Cursor.to_json() or null>, "generation": int, "loop": int}``
(missing keys: 0, null, 0, 0); out the same (the shard only if it came in) with the cursor the
capture ended with, ``loop + 1`` and ``continue`` (the switch parameter is ``on``). Switched off
at the start, or a shard with no symbols left: no capture, ``continue`` false. The shard's
symbols are its share of ``TRADELAKE_SYMBOLS`` (``tradelake.shards``), its checkpoint
``tradelake.shards.cursor_key(CURSOR_KEY, shard)``.

Delivery: at least once. The cursor advances only by trades Firehose acknowledged and is
checkpointed to S3 after every flush; a step that fails or times out is resumed from the newer
of the payload and the checkpoint, and whatever is sent twice carries the same ``trade_key``.
The capture stops ``SAFETY_MARGIN_S`` before the Lambda deadline to flush and return.

Connects: a failed connect, the first of the step included, is retried with backoff until that
deadline (``fail_fast=False``; metric ``ConnectFailures``): a network blip costs a few seconds,
not a failed execution. A step that never connects returns at its deadline with the cursor it
was given and ``continue`` true; the next step tries again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from tradelake.adapters import websocket_source
from tradelake.adapters.emf_metrics import CaptureMetrics
from tradelake.adapters.firehose_sink import FirehoseSink
from tradelake.adapters.products_http import fetch_products
from tradelake.adapters.s3_state import S3CursorStore, S3GapLedger
from tradelake.capture import Capture, CaptureConfig, Connect
from tradelake.config import IngestConfig
from tradelake.cursor import Cursor
from tradelake.shards import cursor_key, shards
from tradelake.supervise import parse_switch

SERVICE = "ingest"
logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
# No Powertools Tracer here, unlike the other functions: its X-Ray SDK is ~21 MiB of the
# function's peak memory (docs/BENCHMARKS.md, section 6), which sets the size of the one function
# that runs all month, and in a 14-minute step it would trace every PutRecordBatch and checkpoint.
# Lambda's active tracing (the template) still traces each invocation, at no memory cost here.

config = IngestConfig.from_env()
SHARDS = shards(config.symbols, config.symbols_per_shard)
"""The symbols of every shard; the execution input says which one this step captures."""
# One owner per retry, so that attempts never multiply:
# - Firehose: the SINK owns every retry of PutRecordBatch (refused entries, throttling, 5xx,
#   network errors and read timeouts, up to DELIVERY_BACKOFF.attempts calls for a record), so
#   botocore makes exactly one attempt per call. A retry after a read timeout may store a record
#   twice; the sink counts it (FirehoseNetworkErrors) and readers de-duplicate by trade_key.
# - S3 (checkpoint, gaps) and SSM (the switch): botocore owns their retries (standard mode,
#   3 retries after the first attempt); nothing above retries these calls.
FIREHOSE_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})
BOTOCORE_RETRIES = Config(retries={"mode": "standard", "max_attempts": 3})
clients = {
    "firehose": boto3.client("firehose", config=FIREHOSE_RETRIES),
    "s3": boto3.client("s3", config=BOTOCORE_RETRIES),
    "ssm": boto3.client("ssm", config=BOTOCORE_RETRIES),
}
products = cache(lambda: fetch_products(config.phemex_url))
"""Phemex's products list, fetched once per container (None → the symbols' shape decides)."""


def switched_on(ssm: Any) -> bool:
    return parse_switch(str(ssm.get_parameter(Name=config.switch_parameter)["Parameter"]["Value"]))


@logger.inject_lambda_context
@metrics.log_metrics
def handler(
    event: dict[str, Any] | None,
    context: LambdaContext,
    *,
    connect: Connect | None = None,
    firehose: Any = None,
    s3: Any = None,
    ssm: Any = None,
    wall_ns: Callable[[], int] = time.time_ns,
) -> dict[str, Any]:
    """The ports are for tests: a simulator passes its connect and its market clock."""
    event = event or {}
    payload = event.get("cursor")
    generation, loop = int(event.get("generation") or 0), int(event.get("loop") or 0)
    shard = int(event.get("shard") or 0)
    symbols = SHARDS[shard] if shard < len(SHARDS) else ()
    echo = {"shard": shard} if "shard" in event else {}
    ssm = ssm or clients["ssm"]
    stop = {
        **echo,
        "cursor": payload,
        "generation": generation,
        "loop": loop + 1,
        "continue": False,
    }
    if not symbols:  # the symbols changed and this shard has none left: the loop ends
        logger.info("no symbols in this shard: no capture, the loop ends", extra={"shard": shard})
        return stop
    if not switched_on(ssm):
        logger.info("ingestion is switched off: no capture, the loop ends")
        metrics.add_metric(name="IngestSwitchedOff", unit=MetricUnit.Count, value=1)
        return stop

    s3 = s3 or clients["s3"]
    sink = FirehoseSink(firehose or clients["firehose"], config.delivery_stream)
    report = CaptureMetrics(metrics, config.metrics_interval_s, sink.counters, logger=logger)
    capture = Capture(
        CaptureConfig(url=config.phemex_url, symbols=symbols, fail_fast=False),
        sink=sink,
        cursor_store=S3CursorStore(
            s3,
            config.data_bucket,
            cursor_key(config.cursor_key, shard),
            Cursor.from_json(payload) if payload else None,
        ),
        gap_ledger=S3GapLedger(s3, config.data_bucket),
        connect=connect or websocket_source.connect,
        products=products(),
        on_status=report,
        wall_ns=wall_ns,
    )
    budget_s = context.get_remaining_time_in_millis() / 1000 - config.safety_margin_s
    try:
        cursor = capture.run(deadline=capture.clock() + budget_s)
    finally:
        report.emit(capture.stats, flush=False)  # @log_metrics flushes the last interval
    stats = capture.stats
    if stats.connections == 0:
        logger.warning(
            "no connection to Phemex this step: the cursor is unchanged, the next step retries",
            extra={"url": config.phemex_url, "connect_failures": stats.connect_failures},
        )
    logger.info(
        "captured",
        extra={
            "received": stats.received,
            "written": stats.written,
            "duplicates": stats.duplicates,
            "gaps": stats.gaps,
            "reconnects": stats.reconnects,
            "connect_failures": stats.connect_failures,
            "rejected": sorted(stats.rejected),
            "unacknowledged": sink.pending,
            "generation": generation,
            "loop": loop,
        },
    )
    return {
        **echo,
        "cursor": cursor.to_json(),
        "generation": generation,
        "loop": loop + 1,
        "continue": switched_on(ssm),
    }
