"""The monthly bill of one stage capturing BTCUSD 24/7, line by line, in eu-west-1.

Three kinds of input, kept apart:

- the stack's ACTUAL settings, read from the packaged template (``make package`` writes
  ``.serverless/cloudformation-template-update-stack.json``): memory sizes, timeouts, schedules,
  the state machine's loop, Firehose buffering and options, log retention, alarms, dashboards,
  EventBridge rules;
- MEASURED counts from ``make bench``: Firehose records and billed bytes per trade and flushes
  per trade (``firehose_packing``), Parquet bytes per trade (``rollup_10m``), the ingest
  handler's log bytes per second (``ingest_burst``);
- ASSUMPTIONS, named below with their reasons, and the list prices of ``PRICES``.

A month is 730 hours (AWS's convention: 512 MB × 730 h on arm64 = $17.52, the issue's figure).
Totals are given at list price with no free tier, and with the always-free tiers an account
has every month (Lambda, Step Functions, CloudWatch, Glue, X-Ray), which are shared with
whatever else runs in the account.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ---- inputs to fill in or revisit ------------------------------------------------------------
TRADES_PER_SECOND = 5.0
"""BTCUSD on Phemex, averaged over a month. Assumed, not measured (nothing here can reach
Phemex): an inverse BTC perpetual on a mid-size exchange trades a few times a second on average,
with minutes of hundreds a second; 5/s is 13 M trades a month. Only the per-GB and per-flush
lines depend on it, and those are cents (the bench also shows 2 and 10 trades/s)."""

SYMBOLS = 1
"""The goal is BTCUSD alone (the template's default parameter lists three): the per-symbol
alarms of the template are counted once per symbol here."""

CUSTOM_METRICS = SYMBOLS
"""CloudWatch custom metrics published in a month without faults: ``TradesWritten`` per symbol;
every other custom metric is a fault counter published only in a minute in which it is not zero
(adapters/emf_metrics.py; tests/infra/test_monitoring.py asserts N). The lag is in the ingest
function's status line, charted by a Logs Insights query (``DASHBOARD_VIEWS_PER_MONTH``)."""

NOTIFICATIONS_PER_MONTH = 60
"""Messages to the alarm topic (each one e-mail): alarm state changes, the supervisor's messages
about ingest executions that ended badly (one per shard and hour at most), failed rollup runs.
Assumed: two a day, more than a month without faults sends; SNS bills them per 100,000, so even
a bad month stays under a cent."""

DASHBOARD_VIEWS_PER_MONTH = 100
"""Times the dashboard is opened (or refreshed) in a month, each running its Logs Insights query
(the lag chart) over ``DASHBOARD_WINDOW_H`` of the ingest log group. Assumed: three a day."""
DASHBOARD_WINDOW_H = 3
"""The time range a dashboard opens with (CloudWatch's default: the last 3 hours)."""

PRICES_AS_OF = "2026-11-29"
PRICES: Mapping[str, float] = {
    # AWS list prices, eu-west-1 (Ireland), on-demand, USD, as published on the services'
    # pricing pages; assumed unchanged on PRICES_AS_OF. Check them before quoting a bill.
    "lambda_gb_s_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1e6,
    "sfn_transition": 0.025 / 1000,
    "firehose_ingest_gb": 0.031,  # Direct PUT, first 500 TB, billed per record in 5 KB steps
    "firehose_conversion_gb": 0.020,  # JSON to Parquet, per GB ingested (5 KB steps)
    "firehose_dp_gb": 0.020,  # dynamic partitioning, per GB delivered
    "firehose_dp_object": 0.005 / 1000,  # dynamic partitioning, per S3 object delivered
    "firehose_jq_hour": 0.07,  # dynamic partitioning, per JQ processing hour
    "s3_gb_month": 0.023,  # S3 Standard, first 50 TB
    "s3_put": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "s3_get": 0.0004 / 1000,  # GET, SELECT and all other requests
    "glue_request": 1.00 / 1e6,
    "athena_tb": 5.00,  # per TB scanned, 10 MB minimum per query; DDL is free
    "cw_metric_month": 0.30,  # custom metric, first 10,000
    "cw_logs_ingest_gb": 0.57,
    "cw_logs_storage_gb_month": 0.03,
    "cw_logs_insights_gb": 0.005,  # Logs Insights, per GB scanned
    "cw_alarm_metric_month": 0.10,  # standard resolution, per metric an alarm evaluates
    "cw_alarm_high_res_metric_month": 0.30,
    "cw_dashboard_month": 3.00,
    "xray_trace": 5.00 / 1e6,
    "sns_email": 2.00 / 100_000,  # e-mail deliveries; the publish requests ($0.50/M) are free
}
FREE: Mapping[str, float] = {
    # The always-free tiers (every month, every account; NOT the 12-month trial tiers).
    "lambda_gb_s_arm64": 400_000,
    "lambda_request": 1_000_000,
    "sfn_transition": 4_000,
    "glue_request": 1_000_000,
    "cw_metric_month": 10,
    "cw_alarm_metric_month": 10,
    "cw_dashboard_month": 3,
    "cw_logs_ingest_gb": 5,
    "xray_trace": 100_000,
    "sns_email": 1_000,
}

# ---- assumptions for what the bench cannot measure ------------------------------------------
SUPERVISOR_S = 1.0
"""Seconds a supervisor run bills: SSM, ListExecutions, maybe DescribeExecution."""
PARTITIONS_S = 1.0
"""Seconds a partitions run bills: GetTable (cached 5 min), one BatchCreatePartition."""
ROLLUP_QUERY_S = 4.0
"""Seconds an Athena UNLOAD of one hour partition runs (the function waits; 4 at a time)."""
ATHENA_MIN_BYTES = 10 * 1024**2
GLUE_PER_OBJECT = 2
"""Glue requests per delivered object: Firehose's schema read, the partitions function's
BatchCreatePartition."""
GLUE_PER_QUERY = 3
"""Glue requests per Athena query (database, table, partitions) and per partition registered."""
S3_PUTS_PER_QUERY = 4
"""S3 PUT/LIST per rollup query: the LIST before the delete, the UNLOAD file, the result and
metadata files in athena-results/."""
S3_GETS_PER_QUERY = 40
"""S3 GETs per rollup query: footer and column chunks of each of the hour's ~12 files."""
JQ_SECONDS_PER_RECORD = 100e-6
"""JQ time per deaggregated trade (Firehose reports JQ processing hours; 0.1 ms assumed)."""
LOG_BYTES_PER_RUN = 1500
"""Log bytes per invocation of the small functions (START/END/REPORT lines, a JSON line)."""
STATUS_LINE_BYTES = 450
"""The ingest function's status line (the lag; adapters/emf_metrics.py), one every
METRICS_INTERVAL_S (template): 427 bytes as its logger writes it, plus CloudWatch's 26 bytes of
overhead per event. Not in the bench's measured bytes a second, whose run is shorter."""
STEP_FUNCTIONS_LOG_BYTES = 0
"""The workflow logs at level ERROR only: nothing in a good month."""

HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
GB = 1024**3


@dataclass(frozen=True)
class Line:
    """One line of the bill: ``quantity`` units at ``price`` each, ``free`` of them free."""

    service: str
    item: str
    quantity: float
    unit: str
    price_key: str | None
    basis: str
    """Where the quantity comes from: template, measured or assumed, and how."""

    @property
    def price(self) -> float:
        return PRICES[self.price_key] if self.price_key else 0.0

    @property
    def list_usd(self) -> float:
        return self.quantity * self.price

    def usd_after(self, free_left: dict[str, float]) -> float:
        """Cost after what is left of the free tier of this price; uses it up."""
        if self.price_key is None:
            return 0.0
        free = free_left.get(self.price_key, 0.0)
        used = min(free, self.quantity)
        free_left[self.price_key] = free - used
        return (self.quantity - used) * self.price


# ---- reading the packaged template -----------------------------------------------------------
@dataclass(frozen=True)
class Function:
    memory_mb: int
    timeout_s: int
    traced: bool
    env: Mapping[str, Any]


@dataclass(frozen=True)
class StackSettings:
    functions: Mapping[str, Function]
    runs_per_month: Mapping[str, float]
    """Scheduled invocations per month, by function."""
    transitions_per_loop: int
    firehose_interval_s: int
    dynamic_partitioning: bool
    jq: bool
    conversion: bool
    log_retention_days: Sequence[int]
    alarm_metrics: int
    high_res_alarm_metrics: int
    dashboards: int
    schedules: int
    """EventBridge rules with a schedule: free."""
    aws_event_rules: int
    """EventBridge rules on the default bus matching AWS service events (``source: aws.*``):
    free, as those events are; only custom events published to a bus are billed."""


def _function_name(logical_id: str) -> str:
    return logical_id.removesuffix("LambdaFunction").lower()


def runs_per_month(expression: str) -> float:
    """Invocations a month of an EventBridge ``rate(...)`` or ``cron(...)`` schedule."""
    rate = re.fullmatch(r"rate\((\d+) (minute|hour|day)s?\)", expression)
    if rate:
        seconds = {"minute": 60, "hour": 3600, "day": 86400}[rate.group(2)]
        return SECONDS_PER_MONTH / (int(rate.group(1)) * seconds)
    cron = re.fullmatch(r"cron\((\S+) (\S+) (\S+) (\S+) (\S+) (\S+)\)", expression)
    if cron is None:
        raise ValueError(f"unknown schedule {expression!r}")
    minute, hour, day, month, weekday, _ = cron.groups()
    if not (minute.isdigit() and day in "*?" and month == "*" and weekday in "*?"):
        raise ValueError(f"schedule {expression!r}: only daily or hourly crons are modelled")
    per_day = 24 if hour == "*" else len(hour.split(","))
    return per_day * HOURS_PER_MONTH / 24


def loop_transitions(definition: Mapping[str, Any]) -> int:
    """States entered per loop of the workflow's normal path (StartAt back to StartAt)."""
    states, start = definition["States"], definition["StartAt"]
    name, count = start, 0
    while True:
        count += 1
        state = states[name]
        name = state.get("Next") or state.get("Default")
        if name is None or count > len(states):
            raise ValueError("the workflow's normal path does not loop")
        if name == start:
            return count


def read_template(path: Path) -> StackSettings:
    """The settings the bill depends on, from the packaged CloudFormation template."""
    resources: dict[str, Any] = {
        k: r for k, r in json.loads(path.read_text())["Resources"].items() if "Condition" not in r
    }
    functions = {}
    for logical_id, r in resources.items():
        if r["Type"] == "AWS::Lambda::Function":
            p = r["Properties"]
            functions[_function_name(logical_id)] = Function(
                memory_mb=int(p.get("MemorySize", 128)),
                timeout_s=int(p.get("Timeout", 3)),
                traced=p.get("TracingConfig", {}).get("Mode") == "Active",
                env=p.get("Environment", {}).get("Variables", {}),
            )
    runs: dict[str, float] = {}
    for r in resources.values():
        p = r["Properties"]
        if r["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in p:
            for target in p["Targets"]:
                name = _function_name(target["Arn"]["Fn::GetAtt"][0])
                runs[name] = runs.get(name, 0.0) + runs_per_month(p["ScheduleExpression"])
    machine = next(r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine")
    body = machine["Properties"]["DefinitionString"]
    text = body["Fn::Sub"][0] if isinstance(body, dict) else body
    stream = next(
        r for r in resources.values() if r["Type"] == "AWS::KinesisFirehose::DeliveryStream"
    )
    s3 = stream["Properties"]["ExtendedS3DestinationConfiguration"]
    processors = s3.get("ProcessingConfiguration", {}).get("Processors", [])
    jq = any(
        p.get("ParameterName") == "JsonParsingEngine" and str(p["ParameterValue"]).startswith("JQ")
        for proc in processors
        for p in proc.get("Parameters", [])
    )
    alarm_metrics = high_res = per_symbol = 0
    symbols: set[str] = set()
    for r in resources.values():
        if r["Type"] == "AWS::CloudWatch::Alarm":
            p = r["Properties"]
            n = sum(1 for m in p.get("Metrics", []) if "MetricStat" in m) or 1
            symbol = {d["Name"]: d["Value"] for d in p.get("Dimensions", [])}.get("symbol")
            if symbol is not None:  # the template's symbols, not SYMBOLS: scaled below
                symbols.add(symbol)
                per_symbol += n
            elif int(p.get("Period", 60)) < 60:
                high_res += n
            else:
                alarm_metrics += n
    if symbols:
        alarm_metrics += per_symbol // len(symbols) * SYMBOLS
    rules = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Events::Rule"]
    event_rules = [p for p in rules if "EventPattern" in p]
    for p in event_rules:
        sources = [str(source) for source in p["EventPattern"].get("source", [])]
        if "EventBusName" in p or not sources or not all(s.startswith("aws.") for s in sources):
            raise ValueError(f"rule {p.get('Name')}: custom events or another bus are billed")
    return StackSettings(
        functions=functions,
        runs_per_month=runs,
        transitions_per_loop=loop_transitions(json.loads(text)),
        firehose_interval_s=int(s3["BufferingHints"]["IntervalInSeconds"]),
        dynamic_partitioning=bool(s3.get("DynamicPartitioningConfiguration", {}).get("Enabled")),
        jq=jq,
        conversion=bool(s3.get("DataFormatConversionConfiguration", {}).get("Enabled")),
        log_retention_days=[
            int(r["Properties"].get("RetentionInDays", 0))
            for r in resources.values()
            if r["Type"] == "AWS::Logs::LogGroup"
        ],
        alarm_metrics=alarm_metrics,
        high_res_alarm_metrics=high_res,
        dashboards=sum(1 for r in resources.values() if r["Type"] == "AWS::CloudWatch::Dashboard"),
        schedules=sum(1 for p in rules if "ScheduleExpression" in p),
        aws_event_rules=len(event_rules),
    )


# ---- the measured counts ---------------------------------------------------------------------
@dataclass(frozen=True)
class Measured:
    """Per-trade and per-second figures from ``make bench``."""

    payload_bytes_per_trade: float
    billed_bytes_per_trade: float
    flushes_per_trade: float
    parquet_bytes_per_trade: float
    ingest_log_bytes_per_s: float
    rollups: int
    """Rollups per symbol and hour (``analytics.ROLLUPS``)."""


def gb_s(memory_mb: int, seconds: float) -> float:
    return memory_mb / 1024 * seconds


def model(
    stack: StackSettings,
    m: Measured,
    trades_per_s: float = TRADES_PER_SECOND,
    custom_metrics: int = CUSTOM_METRICS,
    ingest_mb: int | None = None,
) -> list[Line]:
    """Every line of the monthly bill; ``ingest_mb``: the ingest function at another size."""
    trades = trades_per_s * SECONDS_PER_MONTH * SYMBOLS
    f = stack.functions
    ingest = f["ingest"]
    step_s = ingest.timeout_s - float(ingest.env.get("SAFETY_MARGIN_S", 0))
    loops = SECONDS_PER_MONTH / step_s
    objects = SYMBOLS * SECONDS_PER_MONTH / stack.firehose_interval_s
    lookback = int(f["rollup"].env.get("ROLLUP_LOOKBACK_HOURS", 1))
    rollup_runs = stack.runs_per_month.get("rollup", 0.0)
    queries = rollup_runs * lookback * SYMBOLS * m.rollups
    query_bytes = max(ATHENA_MIN_BYTES, m.parquet_bytes_per_trade * trades_per_s * 3600)
    rollup_run_s = math.ceil(lookback * SYMBOLS * m.rollups / 4) * ROLLUP_QUERY_S + 2
    supervisor_runs = stack.runs_per_month.get("supervisor", 0.0)
    partition_runs = objects + stack.runs_per_month.get("partitions", 0.0)
    flushes = trades * m.flushes_per_trade
    payload_gb = trades * m.payload_bytes_per_trade / GB
    billed_gb = trades * m.billed_bytes_per_trade / GB
    stored_gb = trades * m.parquet_bytes_per_trade / GB
    runs = {
        "ingest": loops,
        "supervisor": supervisor_runs,
        "partitions": partition_runs,
        "rollup": rollup_runs,
    }
    status_interval_s = float(ingest.env.get("METRICS_INTERVAL_S", 60))
    ingest_log_bytes_per_s = m.ingest_log_bytes_per_s + STATUS_LINE_BYTES / status_interval_s
    log_gb = (
        ingest_log_bytes_per_s * SECONDS_PER_MONTH
        + LOG_BYTES_PER_RUN * (supervisor_runs + partition_runs + rollup_runs)
        + STEP_FUNCTIONS_LOG_BYTES
    ) / GB
    insights_gb = (
        DASHBOARD_VIEWS_PER_MONTH * ingest_log_bytes_per_s * DASHBOARD_WINDOW_H * 3600 / GB
    )
    retention_months = max(stack.log_retention_days, default=0) / 30
    mem = {name: fn.memory_mb for name, fn in f.items()}
    if ingest_mb is not None:
        mem["ingest"] = ingest_mb
    lines = [
        Line(
            "Lambda",
            f"ingest, 24/7 at {mem['ingest']} MB",
            gb_s(mem["ingest"], SECONDS_PER_MONTH),
            "GB-s",
            "lambda_gb_s_arm64",
            f"template: {mem['ingest']} MB arm64, running all month",
        ),
        Line(
            "Lambda",
            f"supervisor, {supervisor_runs:,.0f} runs at {mem['supervisor']} MB",
            gb_s(mem["supervisor"], supervisor_runs * SUPERVISOR_S),
            "GB-s",
            "lambda_gb_s_arm64",
            f"template schedule; {SUPERVISOR_S:g} s a run assumed",
        ),
        Line(
            "Lambda",
            f"partitions, {partition_runs:,.0f} runs at {mem['partitions']} MB",
            gb_s(mem["partitions"], partition_runs * PARTITIONS_S),
            "GB-s",
            "lambda_gb_s_arm64",
            f"one per Firehose object + the daily reconcile; {PARTITIONS_S:g} s a run assumed",
        ),
        Line(
            "Lambda",
            f"rollup, {rollup_runs:,.0f} runs at {mem['rollup']} MB",
            gb_s(mem["rollup"], rollup_runs * rollup_run_s),
            "GB-s",
            "lambda_gb_s_arm64",
            f"template schedule; {rollup_run_s:g} s a run (its queries, 4 at a time)",
        ),
        Line(
            "Lambda",
            "requests, all functions",
            sum(runs.values()),
            "requests",
            "lambda_request",
            f"ingest: a step every {step_s:g} s (timeout - SAFETY_MARGIN_S)",
        ),
        Line(
            "Step Functions",
            f"state transitions, {stack.transitions_per_loop} per ingest loop",
            loops * stack.transitions_per_loop,
            "transitions",
            "sfn_transition",
            "template: the workflow's normal path",
        ),
        Line(
            "Firehose",
            "ingestion (billed per record in 5 KB steps)",
            billed_gb,
            "GB",
            "firehose_ingest_gb",
            f"measured: {m.billed_bytes_per_trade:.0f} billed bytes a trade",
        ),
    ]
    if stack.conversion:
        lines.append(
            Line(
                "Firehose",
                "format conversion to Parquet",
                billed_gb,
                "GB",
                "firehose_conversion_gb",
                "template: enabled; per GB ingested (5 KB steps)",
            )
        )
    if stack.dynamic_partitioning:
        lines += [
            Line(
                "Firehose",
                "dynamic partitioning, data",
                payload_gb,
                "GB",
                "firehose_dp_gb",
                f"measured: {m.payload_bytes_per_trade:.0f} bytes a trade",
            ),
            Line(
                "Firehose",
                "dynamic partitioning, objects",
                objects,
                "objects",
                "firehose_dp_object",
                f"template: a file per partition every {stack.firehose_interval_s} s",
            ),
        ]
        if stack.jq:
            lines.append(
                Line(
                    "Firehose",
                    "dynamic partitioning, JQ processing",
                    trades * JQ_SECONDS_PER_RECORD / 3600,
                    "hours",
                    "firehose_jq_hour",
                    f"template: JQ; {JQ_SECONDS_PER_RECORD * 1e6:g} µs a trade assumed",
                )
            )
    lines += [
        Line(
            "S3",
            "storage, Parquet added this month (average over the month)",
            stored_gb / 2,
            "GB-month",
            "s3_gb_month",
            f"measured: {m.parquet_bytes_per_trade:.1f} bytes a trade; +{stored_gb:.2f} GB a month",
        ),
        Line(
            "S3",
            "PUT: cursor checkpoints (one per Firehose flush)",
            flushes,
            "requests",
            "s3_put",
            f"measured: a flush every {1 / (m.flushes_per_trade * trades_per_s):.0f} s",
        ),
        Line(
            "S3",
            "PUT: Firehose objects",
            objects,
            "requests",
            "s3_put",
            "template: buffering interval",
        ),
        Line(
            "S3",
            "PUT/LIST: rollups and Athena results",
            queries * S3_PUTS_PER_QUERY,
            "requests",
            "s3_put",
            f"{S3_PUTS_PER_QUERY} per query assumed",
        ),
        Line(
            "S3",
            "GET: Athena reads, checkpoint reads",
            queries * S3_GETS_PER_QUERY + loops,
            "requests",
            "s3_get",
            f"{S3_GETS_PER_QUERY} per query assumed",
        ),
        Line(
            "Glue",
            "Data Catalog requests",
            objects * GLUE_PER_OBJECT + queries * GLUE_PER_QUERY * 2,
            "requests",
            "glue_request",
            "per object and per query, assumed",
        ),
        Line(
            "Athena",
            f"rollups: {queries:,.0f} queries, {query_bytes / 1024**2:.0f} MB each",
            queries * query_bytes / 1024**4,
            "TB",
            "athena_tb",
            f"template: hourly × {lookback} h look-back × {m.rollups} rollups; 10 MB minimum",
        ),
        Line(
            "CloudWatch",
            "custom metrics",
            custom_metrics,
            "metrics",
            "cw_metric_month",
            "input: CUSTOM_METRICS at the top of bench/cost.py",
        ),
        Line(
            "CloudWatch",
            "logs ingestion",
            log_gb,
            "GB",
            "cw_logs_ingest_gb",
            f"measured ingest: {m.ingest_log_bytes_per_s:.1f} B/s + a status line every "
            f"{status_interval_s:g} s; others {LOG_BYTES_PER_RUN} B a run",
        ),
        Line(
            "CloudWatch",
            f"logs storage, {max(stack.log_retention_days, default=0)} days kept",
            log_gb * retention_months,
            "GB-month",
            "cw_logs_storage_gb_month",
            "template: retention (uncompressed size, an upper bound)",
        ),
        Line(
            "CloudWatch",
            "Logs Insights: the dashboard's lag chart",
            insights_gb,
            "GB scanned",
            "cw_logs_insights_gb",
            f"input: {DASHBOARD_VIEWS_PER_MONTH} views a month × {DASHBOARD_WINDOW_H} h of the "
            "ingest log group",
        ),
        Line(
            "CloudWatch",
            f"alarms ({stack.alarm_metrics} metrics)",
            stack.alarm_metrics,
            "alarm metrics",
            "cw_alarm_metric_month",
            "template: every AWS::CloudWatch::Alarm",
        ),
        Line(
            "CloudWatch",
            "dashboards",
            stack.dashboards,
            "dashboards",
            "cw_dashboard_month",
            "template: every AWS::CloudWatch::Dashboard",
        ),
        Line(
            "EventBridge",
            f"rules: {stack.schedules} schedules, {stack.aws_event_rules} on AWS service events",
            stack.schedules + stack.aws_event_rules,
            "rules",
            None,
            "template: schedules and AWS service events on the default bus are free",
        ),
        Line(
            "SNS",
            "alarm topic e-mails (alarms, ingest executions ended badly, failed rollups)",
            NOTIFICATIONS_PER_MONTH,
            "e-mails",
            "sns_email",
            "input: NOTIFICATIONS_PER_MONTH at the top of bench/cost.py",
        ),
        Line(
            "X-Ray",
            f"traces (tracing Active on {', '.join(n for n in runs if f[n].traced) or 'none'})",
            sum(runs[n] for n in runs if f[n].traced),
            "traces",
            "xray_trace",
            "template: one trace per invocation (a few a minute: all sampled)",
        ),
    ]
    if stack.high_res_alarm_metrics:
        lines.append(
            Line(
                "CloudWatch",
                "high-resolution alarms",
                stack.high_res_alarm_metrics,
                "alarm metrics",
                "cw_alarm_high_res_metric_month",
                "template: Period < 60 s",
            )
        )
    lines.append(
        Line(
            "other",
            "SQS, SSM standard parameter, KMS (AWS-owned keys), Lambda destinations",
            0,
            "",
            None,
            "no charge at this volume",
        )
    )
    return lines


LEVER_INGEST_MB = (192, 128)
"""Ingest sizes below the template's, priced for comparison: most of the bill is the always-on
function."""


def levers(
    stack: StackSettings, results: Mapping[str, Any]
) -> list[tuple[str, tuple[float, float]]]:
    """The month as measured, then with the ingest function at the smaller sizes that the
    sizing (section 6) rules out today: what a cheaper per-frame path would be worth."""
    measured = measured_from(results)
    smaller = [mb for mb in LEVER_INGEST_MB if mb < stack.functions["ingest"].memory_mb]
    return [
        ("as measured", totals(model(stack, measured))),
        *((f"ingest at {mb} MB", totals(model(stack, measured, ingest_mb=mb))) for mb in smaller),
    ]


def totals(lines: Sequence[Line]) -> tuple[float, float]:
    """The month at list price, and after the always-free tiers."""
    free_left = dict(FREE)
    return sum(line.list_usd for line in lines), sum(line.usd_after(free_left) for line in lines)


def measured_from(results: Mapping[str, Any], rate: float = TRADES_PER_SECOND) -> Measured:
    """The ``Measured`` figures from ``make bench``'s results (``run.py``): the Firehose packing
    of the steady workload nearest ``rate``, as the ingest handler builds its sink."""
    from tradelake.analytics import ROLLUPS

    firehose = results["firehose"]
    runs = [w for w in firehose["workloads"] if w["name"].startswith("steady")]
    packing = min(runs, key=lambda w: abs(w["rate"] - rate))["packed"]
    rollup, burst = results["rollup"], results["ingest"]
    return Measured(
        payload_bytes_per_trade=packing["payload_bytes"] / packing["trades"],
        billed_bytes_per_trade=packing["billed_bytes"] / packing["trades"],
        flushes_per_trade=packing["flushes"] / packing["trades"],
        parquet_bytes_per_trade=rollup["parquet_bytes"] / rollup["trades"],
        ingest_log_bytes_per_s=burst["log_bytes"] / burst["wall_s"],
        rollups=len(ROLLUPS),
    )
