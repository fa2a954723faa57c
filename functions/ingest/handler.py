"""One step of the ingest workflow: capture Phemex trades into Firehose until the deadline.

In ``{"cursor": <Cursor.to_json() or null>, "generation": int, "loop": int}`` (missing keys:
null, 0, 0); out the same with the cursor the capture ended with, ``loop + 1`` and ``continue``
(the switch parameter is ``on``). Switched off at the start: no capture, ``continue`` false.

Delivery: at least once. The cursor advances only by trades Firehose acknowledged and is
checkpointed to S3 after every flush; a step that fails or times out is resumed from the newer
of the payload and the checkpoint, and whatever is sent twice carries the same ``trade_key``.
The capture stops ``SAFETY_MARGIN_S`` before the Lambda deadline to flush and return.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
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
from tradelake.supervise import parse_switch

SERVICE = "ingest"
logger = Logger(service=SERVICE)
metrics = Metrics(service=SERVICE)
tracer = Tracer(service=SERVICE)

config = IngestConfig.from_env()
# botocore retries transient network errors; Firehose refusals and throttling are retried by the
# sink itself (only the refused records). A retry after a timeout may send a record twice: same
# trade_key, by which readers de-duplicate.
retries = Config(retries={"mode": "standard", "max_attempts": 3})
clients = {
    "firehose": boto3.client("firehose", config=retries),
    "s3": boto3.client("s3", config=retries),
    "ssm": boto3.client("ssm", config=retries),
}
products = cache(lambda: fetch_products(config.phemex_url))
"""Phemex's products list, fetched once per container (None → the symbols' shape decides)."""


def switched_on(ssm: Any) -> bool:
    return parse_switch(str(ssm.get_parameter(Name=config.switch_parameter)["Parameter"]["Value"]))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
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
    ssm = ssm or clients["ssm"]
    if not switched_on(ssm):
        logger.info("ingestion is switched off: no capture, the loop ends")
        metrics.add_metric(name="IngestSwitchedOff", unit=MetricUnit.Count, value=1)
        return {"cursor": payload, "generation": generation, "loop": loop + 1, "continue": False}

    s3 = s3 or clients["s3"]
    sink = FirehoseSink(firehose or clients["firehose"], config.delivery_stream)
    report = CaptureMetrics(metrics, config.metrics_interval_s, sink.counters)
    capture = Capture(
        CaptureConfig(url=config.phemex_url, symbols=config.symbols),
        sink=sink,
        cursor_store=S3CursorStore(
            s3,
            config.data_bucket,
            config.cursor_key,
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
    logger.info(
        "captured",
        extra={
            "received": stats.received,
            "written": stats.written,
            "duplicates": stats.duplicates,
            "gaps": stats.gaps,
            "reconnects": stats.reconnects,
            "rejected": sorted(stats.rejected),
            "unacknowledged": sink.pending,
            "generation": generation,
            "loop": loop,
        },
    )
    return {
        "cursor": cursor.to_json(),
        "generation": generation,
        "loop": loop + 1,
        "continue": switched_on(ssm),
    }
