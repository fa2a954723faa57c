"""Tools for the person on call (issue 9): ``tradelake switch`` against moto's SSM,
``tradelake status --lake`` on real lakes written with ParquetSink, and ``tradelake status
--stage`` against a moto stage (functions, switch, executions, checkpoints, objects, Glue, gaps,
alarms), each healthy and unhealthy."""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aws_world import moto_credentials, parquet_table_input
from packaged import STAGE as STAGE_CI
from packaged import Template
from tradelake.adapters.aws_stage import function_name
from tradelake.adapters.glue_catalog import GlueCatalog
from tradelake.adapters.lake_files import FileCursorStore, JsonlGapLedger
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.adapters.s3_state import S3CursorStore, S3GapLedger
from tradelake.adapters.sfn_control import execution_arn
from tradelake.catalog import default_routes
from tradelake.cli import main, parser
from tradelake.config import PartitionsConfig, SupervisorConfig
from tradelake.cursor import Cursor
from tradelake.model import INCREMENTAL, Gap, Trade, parse_fixed
from tradelake.oncall import (
    NS_PER_HOUR,
    NS_PER_MINUTE,
    PARTITION_GRACE_NS,
    stage_status_command,
    switch_parameter,
)
from tradelake.partitions import partition_prefix
from tradelake.reconcile import reconcile
from tradelake.schema import PARTITION_KEYS, TRADE_COLUMNS
from tradelake.shards import cursor_key, shard_of, shards
from tradelake.supervise import execution_name, parse_switch

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
STAGE = "test"
NAME = "/tradelake/test/ingest"


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    moto_credentials(monkeypatch)
    with mock_aws():
        yield boto3.client("ssm", region_name=REGION)


def deploy_switch(ssm: Any, value: str = "on") -> None:
    """The parameter as resources/storage.yml creates it."""
    ssm.put_parameter(Name=NAME, Value=value, Type="String", AllowedPattern="^(on|off)$")


def switch_value(ssm: Any) -> bool:
    return parse_switch(ssm.get_parameter(Name=NAME)["Parameter"]["Value"])


def test_the_parameter_name_is_the_stacks() -> None:
    serverless = (Path(__file__).resolve().parents[2] / "serverless.yml").read_text()
    assert "ingestSwitchParameter: /tradelake/${sls:stage}/ingest" in serverless
    assert switch_parameter(STAGE) == NAME


def test_switch_off_and_on(ssm: Any, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_switch(ssm)
    assert main(["switch", "off", "--stage", STAGE, "--region", REGION]) == 0
    assert switch_value(ssm) is False
    out = capsys.readouterr().out
    assert f"{NAME} ({REGION}) set to off (was on)" in out
    assert main(["switch", "off", "--stage", STAGE, "--region", REGION]) == 0
    assert "set to off (unchanged)" in capsys.readouterr().out
    assert main(["switch", "on", "--stage", STAGE]) == 0  # region from AWS_REGION
    assert switch_value(ssm) is True
    assert "set to on (was off)" in capsys.readouterr().out


def test_switch_of_a_stage_not_deployed_creates_nothing(
    ssm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["switch", "off", "--stage", STAGE, "--region", REGION]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"no parameter {NAME} in {REGION}" in err
    assert ssm.describe_parameters()["Parameters"] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["switch", "off", "--stage", "no/such"],
        ["switch", "off", "--stage", ""],
        ["switch", "maybe", "--stage", STAGE],
        ["switch", "on"],
        ["status", "--lake", ".", "--stale-after", "-3"],
        ["status"],
        ["status", "--lake", ".", "--stage", STAGE],
        ["status", "--lake", ".", "--region", REGION],
        ["status", "--stage", "no/such"],
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err


# --- status --lake -----------------------------------------------------------------------------


def trade(symbol: str, ts_ns: int, k: int = 0) -> Trade:
    return Trade(
        symbol, ts_ns, "buy", parse_fixed("100.5"), parse_fixed("0.5"), k, 0, 1, INCREMENTAL
    )


def write_lake(lake: Path, now_ns: int, newest_age_ns: int) -> None:
    """BTCUSD and BTCUSDT: a trade 3 h before ``now``, two 30 min before the newest, the newest."""
    sink = ParquetSink(lake)
    cursor = Cursor()
    for symbol in ("BTCUSD", "BTCUSDT"):
        newest = now_ns - newest_age_ns
        trades = [
            trade(symbol, now_ns - 3 * NS_PER_HOUR),
            trade(symbol, newest - 30 * NS_PER_MINUTE),
            trade(symbol, newest - 30 * NS_PER_MINUTE, k=1),
            trade(symbol, newest),
        ]
        sink.add(trades)
        sink.flush()
        cursor.advance(trades)
    FileCursorStore(lake).save(cursor)


def status(lake: Path, *extra: str) -> int:
    return main(["status", "--lake", str(lake), *extra])


def test_status_of_a_healthy_lake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time_ns()
    lake = tmp_path / "lake"
    write_lake(lake, now, newest_age_ns=2 * NS_PER_MINUTE)
    # a gap declared 5 h ago: counted in the 24 h, not a reason to be unhealthy
    old = Gap(
        "BTCUSD", now - 6 * NS_PER_HOUR, now - 5 * NS_PER_HOUR - 1, now - 5 * NS_PER_HOUR, "x"
    )
    JsonlGapLedger(lake).record([old])
    assert status(lake) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("healthy")
    assert "unhealthy" not in out
    btcusd = out.split("BTCUSD\n")[1].split("BTCUSDT\n")[0]
    assert "(2 min behind)" in btcusd
    assert "3 in the last hour, 4 in 24 h" in btcusd
    assert "gaps (24 h)    1 spanning 60 min (0 in the last hour)" in btcusd
    assert "newest file    trades/symbol=BTCUSD/" in btcusd
    cursor_time = time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.gmtime((now - 2 * NS_PER_MINUTE) // 10**9)
    )
    assert f"cursor         {cursor_time}Z" in btcusd


def test_status_of_an_unhealthy_lake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time_ns()
    lake = tmp_path / "lake"
    write_lake(lake, now, newest_age_ns=40 * NS_PER_MINUTE)
    gap = Gap(
        "BTCUSDT",
        now - 12 * NS_PER_MINUTE,
        now - 11 * NS_PER_MINUTE,
        now - 10 * NS_PER_MINUTE,
        "stall",
    )
    JsonlGapLedger(lake).record([gap])
    assert status(lake) == 1
    out = capsys.readouterr().out
    assert "unhealthy: BTCUSD: newest trade is 40 min old (stale after 15 min)" in out
    assert "unhealthy: BTCUSDT: newest trade is 40 min old" in out
    assert "unhealthy: BTCUSDT: 1 gap(s) declared in the last hour" in out
    # a longer --stale-after forgives the lag, not the gap
    assert status(lake, "--stale-after", "60") == 1
    out = capsys.readouterr().out
    assert "newest trade is" not in out
    assert out.count("unhealthy:") == 1


def test_status_of_an_empty_or_missing_lake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status(tmp_path) == 1
    assert "unhealthy: no trades, cursor or gaps" in capsys.readouterr().out
    assert status(tmp_path / "nope") == 1
    assert (
        capsys.readouterr().err
        == f"tradelake status: there is no lake at {tmp_path / 'nope'}: no such directory\n"
    )
    file = tmp_path / "file"
    file.write_text("x")
    assert status(file) == 1
    assert capsys.readouterr().err == f"tradelake status: {file} is a file, not a lake directory\n"


# --- status --stage ----------------------------------------------------------------------------

SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")
PER_SHARD = 2  # two shards of these three symbols
ADOPTED = "an-adopted-bucket"  # not tradelake-<stage>-…: found through the functions' settings
MACHINE = f"arn:aws:states:{REGION}:123456789012:stateMachine:tradelake-{STAGE}-ingest"
DATABASE = "tradelake_test"
TABLE = "trades_stored"
ALARM = f"tradelake-{STAGE}-ingest-failed"


@dataclass
class Stack:
    """A moto stage: what `status --stage` reads, as the stack would have it."""

    s3: Any
    glue: Any
    sfn: Any
    ssm: Any
    cloudwatch: Any
    now_ns: int

    def checkpoint(self, shard: int, newest_ns: Mapping[str, int]) -> None:
        cursor = Cursor()
        cursor.advance([trade(symbol, ts) for symbol, ts in newest_ns.items()])
        S3CursorStore(self.s3, ADOPTED, cursor_key("_state/cursor.json", shard), None).save(cursor)


def function(lam: Any, role: str, name: str, env: dict[str, str]) -> None:
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("handler.py", "def handler(event, context): pass\n")
    lam.create_function(
        FunctionName=f"tradelake-{STAGE}-{name}",
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
        Environment={"Variables": env},
    )


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A healthy stage: switch on, one execution per shard, fresh cursors and files in every
    symbol's current hour, those partitions in Glue, old gaps, no alarm of the stage firing."""
    moto_credentials(monkeypatch)
    with mock_aws(config={"lambda": {"use_docker": False}}):
        client = boto3.session.Session(region_name=REGION).client
        world = Stack(
            client("s3"),
            client("glue"),
            client("stepfunctions"),
            client("ssm"),
            client("cloudwatch"),
            time.time_ns(),
        )
        role = client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")
        arn = role["Role"]["Arn"]
        function(
            client("lambda"),
            arn,
            "supervisor",
            {
                "STATE_MACHINE_ARN": MACHINE,
                "TRADELAKE_SYMBOLS": ",".join(SYMBOLS),
                "SYMBOLS_PER_SHARD": str(PER_SHARD),
                "DATA_BUCKET": ADOPTED,
                "CURSOR_KEY": "_state/cursor.json",
                "INGEST_SWITCH_PARAMETER": NAME,
            },
        )
        function(
            client("lambda"),
            arn,
            "partitions",
            {
                "GLUE_DATABASE": DATABASE,
                "TRADES_TABLE": TABLE,
                "GAPS_TABLE": "gaps",
                "DATA_BUCKET": ADOPTED,
                "RECONCILE_DAYS": "3",
            },
        )
        deploy_switch(world.ssm)
        world.s3.create_bucket(
            Bucket=ADOPTED, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        world.glue.create_database(DatabaseInput={"Name": DATABASE})
        world.glue.create_table(
            DatabaseName=DATABASE,
            TableInput=parquet_table_input(
                TABLE, TRADE_COLUMNS, PARTITION_KEYS, f"s3://{ADOPTED}/trades/"
            ),
        )
        machine = world.sfn.create_state_machine(
            name=f"tradelake-{STAGE}-ingest",
            definition='{"StartAt": "Ingest", "States": {"Ingest": {"Type": "Pass", "End": true}}}',
            roleArn=arn,
        )
        assert machine["stateMachineArn"] == MACHINE
        groups = shards(SYMBOLS, PER_SHARD)
        assert len(groups) == 2
        for shard, symbols in enumerate(groups):
            world.sfn.start_execution(stateMachineArn=MACHINE, name=execution_name(3, shard))
            world.checkpoint(shard, dict.fromkeys(symbols, world.now_ns - NS_PER_MINUTE))
        for symbol in SYMBOLS:
            key = f"{partition_prefix(symbol, world.now_ns - NS_PER_MINUTE)}/part-1.parquet"
            world.s3.put_object(Bucket=ADOPTED, Key=key, Body=b"PAR1")
        reconcile(world.s3, GlueCatalog(world.glue, DATABASE), ADOPTED, default_routes(TABLE))
        for hours in (5, 25):  # the gap of 25 h ago is not counted, the other is no problem
            old = Gap("BTCUSD", 1, 2, world.now_ns - hours * NS_PER_HOUR, "stall")
            S3GapLedger(world.s3, ADOPTED).record([old])
        for name in (ALARM, "tradelake-prod-ingest-failed"):
            world.cloudwatch.put_metric_alarm(
                AlarmName=name,
                MetricName="ExecutionsFailed",
                Namespace="AWS/States",
                Statistic="Sum",
                Period=60,
                EvaluationPeriods=1,
                Threshold=0,
                ComparisonOperator="GreaterThanThreshold",
            )
        world.cloudwatch.set_alarm_state(  # another stage's alarm: not this stage's business
            AlarmName="tradelake-prod-ingest-failed", StateValue="ALARM", StateReason="prod"
        )
        yield world


def stage_status(*extra: str) -> int:
    return main(["status", "--stage", STAGE, "--region", REGION, *extra])


def test_status_of_a_healthy_stage(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert stage_status() == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("\nhealthy"), out
    assert f"stage {STAGE} ({REGION}), bucket s3://{ADOPTED}/" in out
    assert "switch           on" in out
    assert re.search(r"shard 0 +ingest-0-3 since \S+Z \(\d+ s\)", out), out
    assert "shard 1          ingest-1-3 since" in out
    btcusd = out.split("BTCUSD\n")[1].split("BTCUSDT\n")[0]
    assert re.search(r"  lag            \d+ s \(cursor at \S+Z\)", btcusd), btcusd  # ≥ 60 s
    assert "  newest file    trades/symbol=BTCUSD/year=" in btcusd
    assert "  gaps (24 h)    1 spanning" in btcusd
    assert "partitions       3 in S3 over 2 days, 0 not in Glue" in out
    assert "alarms           0 in ALARM" in out


def switch_off(stack: Stack) -> None:
    stack.ssm.put_parameter(Name=NAME, Value="off", Type="String", Overwrite=True)


def stop_shard_1(stack: Stack) -> None:
    stack.sfn.stop_execution(executionArn=execution_arn(MACHINE, execution_name(3, 1)))


def second_execution(stack: Stack) -> None:
    stack.sfn.start_execution(stateMachineArn=MACHINE, name=execution_name(4, 0))


def stale_btcusd(stack: Stack) -> None:
    shard = shard_of("BTCUSD", 2)
    stack.checkpoint(
        shard,
        {
            s: stack.now_ns - (40 if s == "BTCUSD" else 1) * NS_PER_MINUTE
            for s in shards(SYMBOLS, PER_SHARD)[shard]
        },
    )


def recent_gap(stack: Stack) -> None:
    gap = Gap("BTCUSDT", 1, 2, stack.now_ns - 10 * NS_PER_MINUTE, "stall")
    S3GapLedger(stack.s3, ADOPTED).record([gap])


def alarm(stack: Stack) -> None:
    stack.cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="1 failed")


@pytest.mark.parametrize(
    ("break_it", "line"),
    [
        (switch_off, "ingestion is switched off (`tradelake switch on --stage test`)"),
        (stop_shard_1, "shard 1 ("),
        (second_execution, "shard 0: 2 executions running (ingest-0-"),
        (stale_btcusd, "BTCUSD: lag 40 min (the cursor's newest trade is at"),
        (recent_gap, "BTCUSDT: 1 gap(s) declared in the last hour"),
        (alarm, f"alarm {ALARM} in ALARM since"),
    ],
    ids=["switch off", "no execution", "two executions", "stale", "gap", "alarm"],
)
def test_status_of_an_unhealthy_stage(
    stack: Stack, capsys: pytest.CaptureFixture[str], break_it: Any, line: str
) -> None:
    break_it(stack)
    assert stage_status() == 1
    out = capsys.readouterr().out
    [problem] = [p for p in out.splitlines() if p.startswith("unhealthy: ")]
    assert problem.startswith(f"unhealthy: {line}"), out


def test_a_partition_missing_from_glue_is_unhealthy_once_its_grace_is_over(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    values = ["BTCUSDT", *partition_prefix("BTCUSDT", stack.now_ns - NS_PER_MINUTE).split("/")[2:]]
    values = [v.split("=")[-1] for v in values]
    stack.glue.delete_partition(DatabaseName=DATABASE, TableName=TABLE, PartitionValues=values)
    args = parser().parse_args(["status", "--stage", STAGE, "--region", REGION])
    # its file is seconds old: the partitions function may still be registering it
    assert stage_status_command(args) == 0
    assert "3 in S3 over 2 days, 1 not in Glue" in capsys.readouterr().out
    later = time.time_ns() + PARTITION_GRACE_NS
    assert stage_status_command(args, now_ns=later) == 1
    out = capsys.readouterr().out
    [problem] = [p for p in out.splitlines() if p.startswith("unhealthy: ")]
    location = f"s3://{ADOPTED}/{partition_prefix('BTCUSDT', stack.now_ns - NS_PER_MINUTE)}/"
    assert problem == (
        f"unhealthy: partition {location} is in S3 but not in Glue "
        f"(`tradelake repair-partitions --stage {STAGE} --bucket {ADOPTED}`)"
    )


def test_status_of_a_stage_that_is_not_deployed(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--stage", "nope", "--region", REGION]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"tradelake status: stage 'nope' is not deployed in {REGION}: "
        "there is no function tradelake-nope-supervisor\n"
    )


def test_status_without_credentials_is_one_line(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert stage_status() == 1
    err = capsys.readouterr().err
    assert err.startswith("tradelake status: no AWS credentials: "), err
    assert err.count("\n") == 1


def test_the_stage_is_found_as_the_packaged_stack_names_it(template: Template) -> None:
    """The functions status --stage reads are named and configured as the adapter expects."""
    settings = {}
    for name in ("supervisor", "partitions"):
        props = template.function(name)
        assert props["FunctionName"] == function_name(STAGE_CI, name)
        variables = props["Environment"]["Variables"]
        settings[name] = {k: v if isinstance(v, str) else "x" for k, v in variables.items()}
    SupervisorConfig.from_env(settings["supervisor"])
    PartitionsConfig.from_env(settings["partitions"])
    assert "DATA_BUCKET" in settings["supervisor"]
    assert "DATA_BUCKET" in settings["partitions"]
