"""What ``tradelake status --stage`` reads from a deployed stack: the facts, no judgement.

The stack's resources are found through what its functions were deployed with, not guessed from
naming rules: the supervisor function ``tradelake-<stage>-supervisor`` (osls names functions
``<service>-<stage>-<function>``) carries the state machine, bucket, cursor key, switch parameter
and symbols in its environment, the partitions function ``tradelake-<stage>-partitions`` the
Glue database and trades table. Both are parsed by the functions' own config classes, so a
bucket adopted with ``existingDataBucket`` and a renamed parameter are followed for free, and no
function means no stage.

Partitions in S3 versus Glue are ``tradelake.reconcile`` run dry over the last ``WINDOW_DAYS``
days (UTC); the objects of those days are listed once more here for their times (the newest
file of each symbol, and how old the first file of a missing partition is). Gaps come from the
S3 gap ledger, whose object names start with the earliest detection time (19 digits), so the
listing starts at the day's edge instead of at the beginning of time.

Clients are made by ``client`` (a boto3 Session's ``client``); boto3 is not imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from tradelake.adapters.aws_errors import error_code
from tradelake.adapters.glue_catalog import GlueCatalog
from tradelake.adapters.lake_files import GAPS_DIR, parse_gap_lines
from tradelake.adapters.sfn_control import StepFunctionsIngestControl
from tradelake.catalog import NotAPartitionError, Route, default_routes, partition_of
from tradelake.config import PartitionsConfig, SupervisorConfig
from tradelake.model import Gap
from tradelake.oncall import NS_PER_DAY, NS_PER_HOUR, Alarm, Execution, StageFacts, StoredFile
from tradelake.reconcile import NOTIFIED_SUFFIX, listing_prefixes, reconcile
from tradelake.shards import shards
from tradelake.supervise import RUNNING, parse_name

WINDOW_DAYS = 2
"""Today and yesterday (UTC): the partitions compared and the files searched for the newest."""


class StageNotFoundError(LookupError):
    """No function of the stage in this account and region: the stage is not deployed here."""


def function_name(stage: str, function: str) -> str:
    """``tradelake-<stage>-<function>``, as osls names a function of service ``tradelake``."""
    return f"tradelake-{stage}-{function}"


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000) * 1000


def _environment(lam: Any, stage: str, function: str, region: str) -> dict[str, str]:
    name = function_name(stage, function)
    try:
        found = lam.get_function_configuration(FunctionName=name)
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise StageNotFoundError(
                f"stage {stage!r} is not deployed in {region}: there is no function {name}"
            ) from exc
        raise
    return dict(found.get("Environment", {}).get("Variables", {}))


def stage_facts(client: Callable[[str], Any], stage: str, region: str, now_ns: int) -> StageFacts:
    """Read everything ``oncall.stage_problems`` judges (raises ``StageNotFoundError``, the
    clients' errors, and ``ValueError`` for a malformed environment, checkpoint or gap)."""
    lam, s3, sfn, ssm = client("lambda"), client("s3"), client("stepfunctions"), client("ssm")
    supervisor = SupervisorConfig.from_env(_environment(lam, stage, "supervisor", region))
    partitions = PartitionsConfig.from_env(_environment(lam, stage, "partitions", region))
    bucket = supervisor.data_bucket
    groups = shards(supervisor.symbols, supervisor.symbols_per_shard)
    control = StepFunctionsIngestControl(
        sfn,
        ssm,
        s3,
        state_machine_arn=supervisor.state_machine_arn,
        switch_parameter=supervisor.switch_parameter,
        bucket=bucket,
        cursor_key=supervisor.cursor_key,
    )
    today = datetime.fromtimestamp(now_ns / 1e9, UTC).date()
    since = today - timedelta(days=WINDOW_DAYS - 1)
    routes = default_routes(partitions.trades_table)
    files = list(_objects(s3, bucket, listing_prefixes(routes[0], since, today, s3, bucket)))
    catalog = GlueCatalog(client("glue"), partitions.glue_database)
    compared = reconcile(s3, catalog, bucket, routes, since=since, today=today, dry_run=True)
    return StageFacts(
        stage=stage,
        region=region,
        bucket=bucket,
        switch_parameter=supervisor.switch_parameter,
        switch=_parameter(ssm, supervisor.switch_parameter),
        shards=groups,
        running=tuple(_running(sfn, supervisor.state_machine_arn)),
        cursor_ns=_positions(control, len(groups)),
        newest_file=_newest(files, routes),
        window_days=WINDOW_DAYS,
        partitions_found=compared.found,
        partitions_missing=tuple(
            _first_file(f"s3://{bucket}/", p.location, files, now_ns) for p in compared.missing
        ),
        gaps=tuple(_gaps(s3, bucket, now_ns - NS_PER_DAY)),
        alarms=tuple(_alarms(client("cloudwatch"), f"tradelake-{stage}-")),
    )


def _positions(control: StepFunctionsIngestControl, shard_count: int) -> dict[str, int]:
    """Each symbol's newest trade time over the shards' checkpoints (a symbol moved to another
    shard is in two: the newer counts)."""
    newest: dict[str, int] = {}
    for shard in range(shard_count):
        checkpoint = control.checkpoint(shard)
        for symbol, position in (checkpoint.symbols if checkpoint else {}).items():
            if position.ts_ns >= 0:
                newest[symbol] = max(position.ts_ns, newest.get(symbol, -1))
    return newest


def _newest(files: list[StoredFile], routes: tuple[Route, ...]) -> dict[str, StoredFile]:
    newest: dict[str, StoredFile] = {}
    for stored in files:
        try:
            symbol = partition_of(stored.key, routes).values[0]
        except NotAPartitionError:
            continue
        if symbol not in newest or stored.modified_ns > newest[symbol].modified_ns:
            newest[symbol] = stored
    return newest


def _first_file(root: str, location: str, files: list[StoredFile], now_ns: int) -> StoredFile:
    """A missing partition's location and its oldest file's time; a partition only the
    reconcile's listing saw (it came after this one's) is as young as can be: ``now_ns``."""
    times = (f.modified_ns for f in files if (root + f.key).startswith(location))
    return StoredFile(location, min(times, default=now_ns))


def _objects(s3: Any, bucket: str, prefixes: list[str]) -> Iterator[StoredFile]:
    for prefix in prefixes:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                if item["Key"].endswith(NOTIFIED_SUFFIX):
                    yield StoredFile(item["Key"], _ns(item["LastModified"]))


def _parameter(ssm: Any, name: str) -> str | None:
    try:
        return str(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except Exception as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise


def _running(sfn: Any, state_machine_arn: str) -> Iterator[Execution]:
    pages = sfn.get_paginator("list_executions").paginate(
        stateMachineArn=state_machine_arn, statusFilter=RUNNING
    )
    for page in pages:
        for e in page.get("executions", []):
            parsed = parse_name(e["name"])
            yield Execution(e["name"], parsed[0] if parsed else None, _ns(e["startDate"]))


def _gaps(s3: Any, bucket: str, since_ns: int) -> Iterator[Gap]:
    """The gaps detected at or after ``since_ns``; objects named an hour earlier are read too."""
    start = f"{GAPS_DIR}/{max(since_ns - NS_PER_HOUR, 0):019d}"
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{GAPS_DIR}/", StartAfter=start
    )
    for page in pages:
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            where = f"s3://{bucket}/{item['Key']}"
            yield from (
                g for g in parse_gap_lines(body.decode(), where) if g.detected_ns >= since_ns
            )


def _alarms(cloudwatch: Any, prefix: str) -> Iterator[Alarm]:
    """The alarms named ``prefix…`` in ALARM (the state is checked here: a stage has a few dozen
    alarms, and moto, where the tests run, applies only one of the two filters of a request)."""
    pages = cloudwatch.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix=prefix, AlarmTypes=["MetricAlarm", "CompositeAlarm"]
    )
    for page in pages:
        for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
            if alarm.get("StateValue") != "ALARM":
                continue
            yield Alarm(
                alarm["AlarmName"],
                _ns(alarm["StateUpdatedTimestamp"]),
                str(alarm.get("StateReason", "")).split("\n", 1)[0],
            )
