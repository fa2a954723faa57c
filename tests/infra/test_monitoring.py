"""The alarms and the dashboard of the packaged template name metrics and log fields that really
exist, and every function's failure reaches the alarm topic, each at most about once an hour.

A custom metric is only real if the code publishes it: the set of published custom metrics
(namespace, name, dimensions) is collected here by RUNNING the code with the packaged
functions' environment — the ingest handler's own ``Metrics`` driven through ``CaptureMetrics``
with every counter of ``CaptureStats`` non-zero, the ingest handler switched off, the rollup
handler failing, the supervisor starting an execution under moto — and reading the EMF
documents Powertools prints. Renaming a metric in the code, or its dimensions, fails the
alarm or chart that names it. An AWS metric must be one the service publishes with exactly those
dimensions (AWS_METRICS, from the services' CloudWatch documentation), about a resource of
this template. Likewise a Logs Insights chart must query fields the ingest handler's own logger
really writes in its status line (``status_line``).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import lint_file
from moto import mock_aws

from aws_world import REGION, LambdaContext, load_function, moto_credentials
from infra.test_offline_package import package_with
from packaged import Template
from tradelake.adapters.emf_metrics import CaptureMetrics
from tradelake.adapters.firehose_sink import FirehoseSink
from tradelake.feed import CaptureStats, SymbolStats
from tradelake.supervise import ENDED_BADLY

ACCOUNT = "123456789012"  # moto's
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
TOPIC = {"Ref": "AlarmTopic"}

Dimensions = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Metric:
    namespace: str
    name: str
    dimensions: Dimensions

    @property
    def dimension_names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.dimensions)


@dataclass(frozen=True)
class AwsMetrics:
    names: frozenset[str]
    dimensions: frozenset[str]
    resource_type: str
    """What the dimension's value must name (a Ref or attribute of a resource of this type)."""


AWS_METRICS = {
    "AWS/Lambda": AwsMetrics(
        frozenset({"Errors", "Throttles", "Duration", "Invocations"}),
        frozenset({"FunctionName"}),
        "AWS::Lambda::Function",
    ),
    "AWS/States": AwsMetrics(
        frozenset(
            {
                "ExecutionsStarted",
                "ExecutionsSucceeded",
                "ExecutionsFailed",
                "ExecutionsTimedOut",
                "ExecutionsAborted",
            }
        ),
        frozenset({"StateMachineArn"}),
        "AWS::StepFunctions::StateMachine",
    ),
    "AWS/Firehose": AwsMetrics(
        frozenset(
            {
                "IncomingRecords",
                "ThrottledRecords",
                "FailedConversion.Records",
                "DeliveryToS3.DataFreshness",
            }
        ),
        frozenset({"DeliveryStreamName"}),
        "AWS::KinesisFirehose::DeliveryStream",
    ),
    "AWS/SQS": AwsMetrics(
        frozenset({"ApproximateNumberOfMessagesVisible"}),
        frozenset({"QueueName"}),
        "AWS::SQS::Queue",
    ),
    # Published by the workgroup (PublishCloudWatchMetricsEnabled), per query state and type.
    "AWS/Athena": AwsMetrics(
        frozenset({"ProcessedBytes"}),
        frozenset({"QueryState", "QueryType", "WorkGroup"}),
        "AWS::Athena::WorkGroup",
    ),
}


# --- what the code publishes ------------------------------------------------------------------


def deployed(value: Any) -> str:
    """An environment value as deployed in moto's account: a Ref is the logical id in lower
    case (a valid bucket or stream name), pseudo parameters are filled in."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return str(value["Ref"]).lower()
    sub = value["Fn::Sub"]
    text = sub if isinstance(sub, str) else sub[0]
    return re.sub(r"\$\{([^}]+)\}", lambda m: PSEUDO.get(m[1], m[1].lower()), text)


def environment(template: Template, name: str) -> dict[str, str]:
    variables = template.function(name)["Environment"]["Variables"]
    return {k: deployed(v) for k, v in variables.items()}


def emf(out: str) -> set[Metric]:
    """Every (namespace, name, dimensions) in the EMF documents among printed lines."""
    found = set()
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            doc = json.loads(line)
            for directive in doc["_aws"]["CloudWatchMetrics"]:
                for dimension_set in directive["Dimensions"]:
                    dimensions = frozenset((d, str(doc[d])) for d in dimension_set)
                    for metric in directive["Metrics"]:
                        found.add(Metric(directive["Namespace"], metric["Name"], dimensions))
    return found


def printed(run: Callable[[], object]) -> set[Metric]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run()
    return emf(out.getvalue())


def every_counter_once(symbols: tuple[str, ...]) -> CaptureStats:
    """Capture stats with every counter of CaptureStats and SymbolStats at 1 (a new counter is
    included by itself), one symbol refused."""
    per_symbol = {f.name: 1 for f in fields(SymbolStats)}
    return CaptureStats(
        **{f.name: 1 for f in fields(CaptureStats) if f.type == "int"},
        symbols={s: SymbolStats(**per_symbol) for s in symbols},
        rejected={symbols[0]: "refused"},
    )


class Refusing:
    """An AWS client whose every call fails."""

    def __getattr__(self, name: str) -> Any:
        def refuse(**kwargs: Any) -> Any:
            raise RuntimeError(f"{name} refused")

        return refuse


class SwitchedOff:
    def get_parameter(self, Name: str) -> dict[str, Any]:
        return {"Parameter": {"Name": Name, "Value": "off"}}


def ingest_metrics(template: Template, monkeypatch: pytest.MonkeyPatch) -> set[Metric]:
    moto_credentials(monkeypatch, **environment(template, "ingest"))
    ingest = load_function("ingest")
    found = printed(lambda: ingest.handler({}, LambdaContext(), ssm=SwitchedOff()))
    sink_counters = FirehoseSink(Refusing(), "stream").counters()  # type: ignore[arg-type]
    report = CaptureMetrics(ingest.metrics, 0.0, lambda: dict.fromkeys(sink_counters, 1))
    return found | printed(lambda: report(every_counter_once(ingest.config.symbols)))


def rollup_metrics(template: Template, monkeypatch: pytest.MonkeyPatch) -> set[Metric]:
    moto_credentials(monkeypatch, **environment(template, "rollup"))
    rollup = load_function("rollup")
    clients = {"athena": Refusing(), "s3": Refusing(), "glue": Refusing()}

    def run() -> None:
        with pytest.raises(RuntimeError, match="refused"):
            rollup.handler(None, LambdaContext(), **clients)

    return printed(run)


def supervisor_metrics(template: Template, monkeypatch: pytest.MonkeyPatch) -> set[Metric]:
    env = environment(template, "supervisor")
    moto_credentials(monkeypatch, **env)
    supervisor = load_function("supervisor")
    with mock_aws():
        sfn, ssm, s3 = (boto3.client(name) for name in ("stepfunctions", "ssm", "s3"))
        sfn.create_state_machine(
            name=env["STATE_MACHINE_ARN"].rsplit(":", 1)[-1],
            definition=json.dumps({"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}}),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/workflow",
        )
        ssm.put_parameter(Name=env["INGEST_SWITCH_PARAMETER"], Value="on", Type="String")
        s3.create_bucket(
            Bucket=env["DATA_BUCKET"], CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        return printed(lambda: supervisor.handler({}, LambdaContext(), sfn=sfn, ssm=ssm, s3=s3))


@pytest.fixture(scope="module")
def published(template: Template) -> set[Metric]:
    """The custom metrics the code publishes, with their dimension values."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        found = ingest_metrics(template, monkeypatch)
        found |= rollup_metrics(template, monkeypatch)
        found |= supervisor_metrics(template, monkeypatch)
    return found


@pytest.fixture(scope="module")
def namespace(template: Template) -> str:
    return str(
        template.function("ingest")["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    )


def test_custom_metrics_are_per_stage_and_per_service(
    published: set[Metric], namespace: str, template: Template
) -> None:
    assert namespace == "tradelake/ci"
    for name in ("ingest", "partitions", "supervisor", "rollup"):
        env = template.function(name)["Environment"]["Variables"]
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == namespace
    assert {m.namespace for m in published} == {namespace}
    assert {dict(m.dimensions)["service"] for m in published} == {"ingest", "rollup", "supervisor"}


def test_steady_state_publishes_trades_written_per_symbol_nothing_else(
    template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is published every hour is what costs $0.30 a month each: for N symbols, N. The lag
    goes to the status line instead (test_the_lag_chart_reads_the_ingest_status_line)."""
    moto_credentials(monkeypatch, **environment(template, "ingest"))
    ingest = load_function("ingest")
    symbols = ingest.config.symbols
    report = CaptureMetrics(ingest.metrics, 0.0, FirehoseSink(Refusing(), "s").counters)  # type: ignore[arg-type]
    quiet = CaptureStats(symbols={s: SymbolStats(received=5, written=5) for s in symbols})
    quiet.peak_lag_ns = 250_000_000
    busy = printed(lambda: report(quiet))
    assert sorted((m.name, dict(m.dimensions).get("symbol", "")) for m in busy) == sorted(
        ("TradesWritten", s) for s in symbols
    )
    still = printed(lambda: report(quiet))  # nothing new: zeros
    assert {m.name for m in still} == {"TradesWritten"}
    assert len(still) == len(symbols)


def status_lines(template: Template, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The ingest handler's status lines for an interval with trades and one without, as its
    own logger writes them (JSON, one a line), through the ``CaptureMetrics`` it builds."""
    moto_credentials(monkeypatch, **environment(template, "ingest"))
    ingest = load_function("ingest")
    out = io.StringIO()
    # Put back after the test: the logger is shared. Not setStream: it flushes the old stream,
    # which an earlier test's capture may have closed.
    monkeypatch.setattr(ingest.logger.registered_handler, "stream", out)
    report = CaptureMetrics(ingest.metrics, 3600.0, logger=ingest.logger)
    stats = CaptureStats(symbols={"BTCUSD": SymbolStats()})
    with contextlib.redirect_stdout(io.StringIO()):  # the EMF blobs
        for received, lag_ms in ((1, 120), (2, 80), (3, 95)):  # a sample a second with trades
            stats.symbols["BTCUSD"].received, stats.peak_lag_ns = received, lag_ms * 10**6
            report(stats)
        report.emit(stats)  # the interval ends
        report(stats)  # no new trade: no lag sample
        report.emit(stats)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return [line for line in lines if line["message"] == "status"]


# --- the alarms -------------------------------------------------------------------------------


def alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template.of_type("AWS::CloudWatch::Alarm").items()}


def names_resource(template: Template, value: Any, resource_type: str) -> bool:
    """Whether a dimension value (an intrinsic, or ``<Id>`` / ``<Id.Attr>`` from a dashboard)
    is the name or ARN of a resource of ``resource_type`` in the template."""
    if isinstance(value, dict) and "Fn::Sub" in value:  # the state machine ARN, built by name
        machines = template.of_type(resource_type).values()
        arn = deployed(value)
        return any(
            arn == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:"
            f"{m['Properties']['StateMachineName']}"
            for m in machines
        )
    if isinstance(value, dict):
        logical_id = value["Ref"] if "Ref" in value else value["Fn::GetAtt"][0]
    else:
        match = re.fullmatch(r"<([A-Za-z0-9]+)(\.[A-Za-z]+)?>", value)
        assert match, f"{value!r} names no resource of the template"
        logical_id = match[1]
    resource = template.resources.get(logical_id)
    return resource is not None and resource["Type"] == resource_type


def check_metric(
    template: Template,
    published: set[Metric],
    *,
    namespace: str,
    name: str,
    dimensions: dict[str, Any],
    where: str,
) -> None:
    if namespace in AWS_METRICS:
        known = AWS_METRICS[namespace]
        assert name in known.names, f"{where}: {namespace} publishes no {name}"
        assert set(dimensions) == known.dimensions, f"{where}: {namespace} {name} {dimensions}"
        for value in dimensions.values():
            assert names_resource(template, value, known.resource_type), f"{where}: {value}"
    else:
        metric = Metric(namespace, name, frozenset(dimensions.items()))
        assert metric in published, f"{where}: the code publishes no {metric}"


def test_every_alarm_names_a_published_metric(template: Template, published: set[Metric]) -> None:
    for logical_id, props in alarms(template).items():
        dimensions = {d["Name"]: d["Value"] for d in props["Dimensions"]}
        assert len(dimensions) == len(props["Dimensions"]), logical_id
        check_metric(
            template,
            published,
            namespace=props["Namespace"],
            name=props["MetricName"],
            dimensions=dimensions,
            where=logical_id,
        )


def test_every_alarm_notifies_the_topic_and_is_named_for_the_stage(template: Template) -> None:
    found = alarms(template)
    assert len(found) >= 10
    for logical_id, props in found.items():
        assert props["AlarmActions"] == [TOPIC], logical_id
        assert props["OKActions"] == [TOPIC], logical_id
        assert props["AlarmName"].startswith("tradelake-ci-"), logical_id
        assert props["TreatMissingData"] in ("breaching", "notBreaching"), logical_id
    assert len({p["AlarmName"] for p in found.values()}) == len(found)


def alarms_on(template: Template, namespace: str, name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in alarms(template).values()
        if (p["Namespace"], p["MetricName"]) == (namespace, name)
    ]


def on_failure(template: Template, function_id: str) -> dict[str, Any] | None:
    """The on-failure destination of a function's asynchronous invocations, if it has one."""
    for config in template.of_type("AWS::Lambda::EventInvokeConfig").values():
        props = config["Properties"]
        if props["FunctionName"] == {"Ref": function_id}:
            destination: dict[str, Any] | None = (
                props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
            )
            return destination
    return None


def queue_alarmed(template: Template, destination: dict[str, Any]) -> bool:
    """Whether the destination is a queue whose waiting messages alarm the topic."""
    queue = destination.get("Fn::GetAtt", [None])[0]
    return any(
        p["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
        for p in alarms_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    )


def test_every_function_failure_reaches_the_topic_at_most_about_once_an_hour(
    template: Template,
) -> None:
    """A failure needs a human once nothing retries it any more, and one message, not one per
    run. The functions that run every few minutes or all the time (ingest, invoked by the
    workflow; the supervisor, every 5 minutes) have an Errors alarm: one message while they keep
    failing, one when they are OK again. The hourly rollup has an on-failure destination to the
    topic (one message per failed run, at most one an hour), and a failed query fails its run
    (tests/integration/test_rollup_handler.py), so it needs no alarm of its own. The partitions
    function's failures wait in a queue whose alarm tells. Nothing else is alarmed: $0.10 a
    month each."""
    functions = template.of_type("AWS::Lambda::Function")
    assert len(functions) == 4
    lambda_alarms = sorted(
        (p["MetricName"], p["Dimensions"][0]["Value"]["Ref"])
        for p in alarms(template).values()
        if p["Namespace"] == "AWS/Lambda"
    )
    assert lambda_alarms == [
        ("Duration", "IngestLambdaFunction"),
        ("Errors", "IngestLambdaFunction"),
        ("Errors", "SupervisorLambdaFunction"),
    ]
    assert on_failure(template, "IngestLambdaFunction") is None  # never invoked asynchronously
    assert on_failure(template, "SupervisorLambdaFunction") is None, "a message every 5 minutes"
    assert on_failure(template, "RollupLambdaFunction") == TOPIC
    assert alarms_on(template, "tradelake/ci", "RollupFailures") == []
    partitions = on_failure(template, "PartitionsLambdaFunction")
    assert partitions is not None
    assert queue_alarmed(template, partitions)


@pytest.mark.parametrize("name", ["supervisor", "rollup"])
def test_what_a_function_tells_the_topic_is_published_with_its_own_role(
    template: Template, name: str
) -> None:
    """The supervisor publishes its messages itself (ALARM_TOPIC_ARN); Lambda sends the
    rollup's failed invocation record with the rollup's execution role. Without sns:Publish on
    the topic either is lost (for the record: DestinationDeliveryFailures, no alarm)."""
    function = template.function(name)
    if name == "supervisor":
        assert function["Environment"]["Variables"]["ALARM_TOPIC_ARN"] == TOPIC
    else:
        assert on_failure(template, f"{name.capitalize()}LambdaFunction") == TOPIC
    role_id = function["Role"]["Fn::GetAtt"][0]
    publish = [
        s["Resource"]
        for s in template.policy_statements(role_id)
        if s["Effect"] == "Allow" and "sns:Publish" in s["Action"]
    ]
    assert publish == [[TOPIC]]
    assert "KmsMasterKeyId" not in template.props("AlarmTopic"), (
        "the role has no kms:GenerateDataKey"
    )


def test_the_supervisor_is_woken_by_what_it_tells(template: Template) -> None:
    """The supervisor's rule and its code agree on what "ended badly" means, and no rule of
    its own sends to the topic (one message per execution, a flood in a crash loop)."""
    (pattern,) = [
        r["Properties"]["EventPattern"]
        for r in template.of_type("AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    ]
    assert set(pattern["detail"]["status"]) == set(ENDED_BADLY)
    targets = [
        t["Arn"]
        for r in template.of_type("AWS::Events::Rule").values()
        for t in r["Properties"]["Targets"]
    ]
    assert TOPIC not in targets


def test_asynchronous_retries_end_before_the_next_run_supersedes_them(template: Template) -> None:
    """A throttled event is retried until MaximumEventAgeInSeconds, whatever
    MaximumRetryAttempts says (default 6 hours): bounded, so the failure is reported while it
    matters, and a late rollup ends (its timeout) before the next hourly one starts."""
    ages = {
        c["Properties"]["FunctionName"]["Ref"]: c["Properties"].get("MaximumEventAgeInSeconds")
        for c in template.of_type("AWS::Lambda::EventInvokeConfig").values()
    }
    assert None not in ages.values(), f"a default 6-hour maximum event age: {ages}"
    rollup = template.function("rollup")
    assert ages["RollupLambdaFunction"] + rollup["Timeout"] < 3600
    assert 5 * 60 < ages["SupervisorLambdaFunction"] <= 15 * 60  # after the next heartbeat
    lookback_h = int(rollup["Environment"]["Variables"]["ROLLUP_LOOKBACK_HOURS"])
    assert ages["PartitionsLambdaFunction"] < lookback_h * 3600


def test_no_trades_alarms_one_per_symbol_missing_data_breaching(
    template: Template, namespace: str
) -> None:
    symbols = template.function("ingest")["Environment"]["Variables"]["TRADELAKE_SYMBOLS"]
    check_no_trades_alarms(template, namespace, symbols.split(","))


def check_no_trades_alarms(template: Template, namespace: str, symbols: list[str]) -> None:
    found = alarms_on(template, namespace, "TradesWritten")
    assert sorted(p["AlarmName"] for p in found) == sorted(
        f"tradelake-ci-no-trades-{s}" for s in set(symbols)
    )
    for props in found:
        symbol = props["AlarmName"].removeprefix("tradelake-ci-no-trades-")
        assert props["Dimensions"] == [
            {"Name": "service", "Value": "ingest"},
            {"Name": "symbol", "Value": symbol},
        ]
        assert props["AlarmDescription"].startswith(f"{symbol}: ")
        assert props["TreatMissingData"] == "breaching", "a capture that stopped is an outage"
        assert (props["Statistic"], props["ComparisonOperator"], props["Threshold"]) == (
            "Sum",
            "LessThanThreshold",
            1,
        )
        assert props["Period"] * props["EvaluationPeriods"] == 15 * 60
        assert props["DatapointsToAlarm"] == props["EvaluationPeriods"]
    assert "NoTradesAlarm" not in template.resources, "the plugin replaced the model alarm"


@pytest.mark.integration
def test_any_number_of_symbols_packages_into_one_alarm_each(
    tmp_path: Path, packaged: Path, template: Template, namespace: str
) -> None:
    symbols = "ETHUSD, BTCUSD,ETHUSD,sETHUSDT,XRPUSDT,uBTCUSD"
    path = package_with(tmp_path, f"symbols={symbols}")
    other = Template(json.loads(path.read_text()))
    check_no_trades_alarms(other, namespace, [s.strip() for s in symbols.split(",")])
    assert "NoTradessETHUSDTAlarm" in other.resources
    assert set(alarms(other)) - {k for k in alarms(other) if k.startswith("NoTrades")} == set(
        alarms(template)
    ) - {k for k in alarms(template) if k.startswith("NoTrades")}
    assert [str(m) for m in lint_file(path)] == []


def test_the_alarms_the_issue_asks_for(template: Template, namespace: str) -> None:
    (gaps,) = alarms_on(template, namespace, "GapDetected")
    assert (gaps["Threshold"], gaps["TreatMissingData"]) == (1, "notBreaching")
    # Failed, timed-out and aborted executions: told by the supervisor; failed rollups: by the
    # rollup's destination (test_every_function_failure_reaches_the_topic_...).
    assert not [p for p in alarms(template).values() if p["Namespace"] == "AWS/States"]
    assert alarms_on(template, namespace, "RollupFailures") == []
    for name in ("FailedConversion.Records", "ThrottledRecords"):
        (firehose,) = alarms_on(template, "AWS/Firehose", name)
        assert (firehose["ComparisonOperator"], firehose["Threshold"]) == (
            "GreaterThanThreshold",
            0,
        )
    (queue,) = alarms_on(template, "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert queue["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["PartitionsFailureQueue", "QueueName"]
    }


def test_firehose_freshness_alarms_above_the_buffer_interval(template: Template) -> None:
    (freshness,) = alarms_on(template, "AWS/Firehose", "DeliveryToS3.DataFreshness")
    stream = template.props("TradesDeliveryStream")["ExtendedS3DestinationConfiguration"]
    interval = stream["BufferingHints"]["IntervalInSeconds"]
    assert interval < freshness["Threshold"] <= 2 * interval
    assert freshness["Statistic"] == "Maximum"


def test_ingest_duration_alarms_when_the_safety_margin_was_not_honoured(
    template: Template,
) -> None:
    """The ingest step runs until SAFETY_MARGIN_S before its timeout by design: the alarm is
    past that, when more than half of the margin went on the last flush and the checkpoint."""
    ingest = template.function("ingest")
    timeout_ms = ingest["Timeout"] * 1000
    margin_ms = int(ingest["Environment"]["Variables"]["SAFETY_MARGIN_S"]) * 1000
    (duration,) = alarms_on(template, "AWS/Lambda", "Duration")
    assert duration["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "IngestLambdaFunction"}}
    ]
    assert duration["Statistic"] == "Maximum"
    assert timeout_ms - margin_ms / 2 <= duration["Threshold"] < timeout_ms


# --- the dashboard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    """One metric a widget plots: a metric, or a SEARCH (dimension filters, ``None`` = any)."""

    namespace: str
    name: str
    dimensions: dict[str, Any]
    search: bool


def widgets(template: Template, kind: str) -> Iterator[dict[str, Any]]:
    """The properties of the dashboard's widgets of type ``kind``, each ``${X}`` as ``<X>``."""
    _, dashboard = template.one("AWS::CloudWatch::Dashboard")
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    found = json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: f"<{m[1]}>", body))["widgets"]
    assert {w["type"] for w in found} == {"metric", "log"}
    for widget in found:
        props: dict[str, Any] = widget["properties"]
        assert props["region"] == "<AWS::Region>", props["title"]
        if widget["type"] == kind:
            yield props


def charts(template: Template) -> Iterator[tuple[str, Chart]]:
    for props in widgets(template, "metric"):
        title = props["title"]
        for entry in props["metrics"]:
            if isinstance(entry[0], dict):
                (spec,) = entry
                searches = re.findall(r"SEARCH\('\{([^}]*)\}([^']*)'", spec["expression"])
                assert searches, f"{title}: {spec['expression']}"
                for schema, terms in searches:
                    namespace, *names = schema.split(",")
                    filters = dict(re.findall(r'(\w+)="([^"]*)"', terms))
                    name = filters.pop("MetricName")
                    assert set(filters) <= set(names), title
                    dimensions = {n: filters.get(n) for n in names}
                    yield title, Chart(namespace, name, dimensions, search=True)
            else:
                namespace, name, *rest = entry
                if rest and isinstance(rest[-1], dict):
                    rest = rest[:-1]
                assert "..." not in rest, f"{title}: spell every metric out"
                assert len(rest) % 2 == 0, title
                dimensions = dict(zip(rest[::2], rest[1::2], strict=True))
                yield title, Chart(namespace, name, dimensions, search=False)


def matches(metric: Metric, chart: Chart) -> bool:
    """Whether a SEARCH finds the published metric: same name and dimension names, and the
    filtered dimensions have the filtered values."""
    values = dict(metric.dimensions)
    return (
        (metric.namespace, metric.name) == (chart.namespace, chart.name)
        and metric.dimension_names == set(chart.dimensions)
        and all(v is None or values[k] == v for k, v in chart.dimensions.items())
    )


def test_every_dashboard_chart_names_a_published_metric(
    template: Template, published: set[Metric]
) -> None:
    found = list(charts(template))
    assert len(found) >= 20
    for title, chart in found:
        if chart.search and chart.namespace not in AWS_METRICS:
            assert any(matches(m, chart) for m in published), f"{title}: nobody publishes {chart}"
        elif chart.search:
            known = AWS_METRICS[chart.namespace]
            assert chart.name in known.names, title
            assert set(chart.dimensions) == known.dimensions, title
            for value in chart.dimensions.values():
                assert value is None or names_resource(template, value, known.resource_type)
        else:
            check_metric(
                template,
                published,
                namespace=chart.namespace,
                name=chart.name,
                dimensions=chart.dimensions,
                where=title,
            )


def test_the_dashboard_shows_the_whole_pipeline(template: Template, namespace: str) -> None:
    shown = {(c.namespace, c.name, c.search): c for _, c in charts(template)}
    trades = shown[(namespace, "TradesWritten", True)]
    assert trades.dimensions == {"service": "ingest", "symbol": None}, "every symbol"
    for name in ("Reconnects", "GapDetected", "RollupFailures"):
        assert (namespace, name, False) in shown, name
    for name in ("IncomingRecords", "DeliveryToS3.DataFreshness"):
        assert ("AWS/Firehose", name, False) in shown, name
    assert ("AWS/States", "ExecutionsStarted", False) in shown
    assert ("AWS/Athena", "ProcessedBytes", True) in shown
    functions = {f"<{k}>" for k in template.of_type("AWS::Lambda::Function")}
    for name in ("Errors", "Duration"):
        plotted = {
            c.dimensions["FunctionName"]
            for _, c in charts(template)
            if (c.namespace, c.name) == ("AWS/Lambda", name)
        }
        assert plotted == functions, name


LOGS_INSIGHTS_FUNCTIONS = ("ispresent", "pct", "max", "min", "avg", "sum", "count")


def test_the_lag_chart_reads_the_ingest_status_line(
    template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lag is a Logs Insights chart over the ingest log group: every field its query
    names is a number in the status line the ingest handler's logger writes for an interval
    with trades, and absent from one without (the query's ispresent drops it)."""
    ((chart),) = widgets(template, "log")
    assert chart["view"] == "timeSeries"
    query = chart["query"]
    assert re.findall(r"SOURCE '([^']*)'", query) == ["<IngestLogGroup>"]
    group = template.props("IngestLogGroup")["LogGroupName"]
    assert group == "/aws/lambda/tradelake-ci-ingest"
    assert re.search(r"\bby bin\(\d+m\)$", query), "a time series"
    calls = "|".join(LOGS_INSIGHTS_FUNCTIONS)
    fields = set(re.findall(rf"\b(?:{calls})\((\w+)", query))
    assert fields >= {"lag_ms_max"}, query

    with_trades, without = status_lines(template, monkeypatch)
    assert {f: with_trades.get(f) for f in fields} == {
        f: v
        for f, v in {"lag_ms_p50": 95.0, "lag_ms_p99": 120.0, "lag_ms_max": 120.0}.items()
        if f in fields
    }
    assert with_trades["lag_samples"] == 3
    assert not fields & set(without)
    assert without["lag_samples"] == 0
