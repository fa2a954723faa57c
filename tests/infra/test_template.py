"""The packaged CloudFormation template is the deployment: assert on it like on code.

Every test reads `.serverless/cloudformation-template-update-stack.json` (and the zips beside
it) as produced by `make package` for stage `ci` in eu-west-1; see conftest.py.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import lint_file

from tradelake.analytics import QUERIES, ROLLUPS
from tradelake.config import IngestConfig, PartitionsConfig, RollupConfig, SupervisorConfig
from tradelake.schema import (
    GAP_COLUMNS,
    PARTITION_KEYS,
    ROLLUP_COLUMNS,
    ROLLUP_PARTITION_KEYS,
    TRADE_COLUMNS,
)

ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = ROOT / "layers" / "core" / "python" / "tradelake" / "sql"
FUNCTIONS = ("ingest", "partitions", "supervisor", "rollup")
STATE_MACHINE_NAME = "tradelake-ci-ingest"
SWITCH = "/tradelake/ci/ingest"
LOCAL_ONLY = ("pyarrow", "duckdb", "websockets")
# Actions that have no resource-level permissions: the only ones allowed on "*".
STAR_ACTIONS = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resolve(value: Any) -> str:
    """A readable stand-in for an intrinsic: ``<Logical.Attr>``, ``${AWS::Region}`` kept."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        text = sub if isinstance(sub, str) else sub[0]
        return re.sub(r"\$\{([^}]+)\}", lambda m: f"<{m[1]}>", text)
    if "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(resolve(p) for p in parts)
    raise AssertionError(f"unexpected intrinsic {value}")


# --- functions and layers -------------------------------------------------------------------


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_runs_python312_on_arm64_with_both_layers(template, name):
    fn = template.function(name)
    assert fn["Runtime"] == "python3.12"
    assert fn["Architectures"] == ["arm64"]
    assert fn["Handler"] == f"functions/{name}/handler.handler"
    assert fn["Layers"] == [{"Ref": "CoreLambdaLayer"}, {"Ref": "DepsLambdaLayer"}]
    # The ingest step's trace would hold nothing its Duration metric does not (serverless.yml).
    assert fn["TracingConfig"] == {"Mode": "PassThrough" if name == "ingest" else "Active"}
    assert fn["FunctionName"] == f"tradelake-ci-{name}"


def test_function_sizes_and_timeouts(template):
    # 128 MB, Lambda's smallest: the measured peak and burst CPU with a margin, with the compiled
    # hot path (docs/BENCHMARKS.md, section 6).
    assert (template.function("ingest")["Timeout"], template.function("ingest")["MemorySize"]) == (
        900,
        128,
    )
    assert template.function("partitions")["Timeout"] == 60
    assert template.function("supervisor")["Timeout"] == 60
    assert template.function("rollup")["Timeout"] == 900


def test_each_function_has_its_own_role(template):
    roles = {name: template.function(name)["Role"] for name in FUNCTIONS}
    assert roles == {
        "ingest": {"Fn::GetAtt": ["IngestRole", "Arn"]},
        "partitions": {"Fn::GetAtt": ["PartitionsRole", "Arn"]},
        "supervisor": {"Fn::GetAtt": ["SupervisorRole", "Arn"]},
        "rollup": {"Fn::GetAtt": ["RollupRole", "Arn"]},
    }
    assert "IamRoleLambdaExecution" not in template.resources  # no shared default role


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("ingest", IngestConfig),
        ("partitions", PartitionsConfig),
        ("supervisor", SupervisorConfig),
        ("rollup", RollupConfig),
    ],
)
def test_function_environment_satisfies_the_config_contract(template, name, config):
    env = {k: resolve(v) for k, v in template.function(name)["Environment"]["Variables"].items()}
    assert env["POWERTOOLS_SERVICE_NAME"] == "tradelake"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "tradelake/ci"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    config.from_env(env)  # every variable the handler's config needs, well-formed


def test_function_environment_values(template):
    ingest = template.function("ingest")["Environment"]["Variables"]
    assert ingest["TRADELAKE_SYMBOLS"] == "BTCUSD,BTCUSDT,sBTCUSDT"
    assert ingest["PHEMEX_URL"] == "wss://ws.phemex.com"
    assert ingest["DELIVERY_STREAM"] == {"Ref": "TradesDeliveryStream"}
    assert ingest["DATA_BUCKET"] == {"Ref": "DataBucket"}
    assert ingest["CURSOR_KEY"] == "_state/cursor.json"
    assert ingest["INGEST_SWITCH_PARAMETER"] == SWITCH
    partitions = template.function("partitions")["Environment"]["Variables"]
    assert partitions["GLUE_DATABASE"] == {"Ref": "GlueDatabase"}
    assert partitions["TRADES_TABLE"] == {"Ref": "TradesTable"}
    assert partitions["GAPS_TABLE"] == {"Ref": "GapsTable"}
    supervisor = template.function("supervisor")["Environment"]["Variables"]
    assert resolve(supervisor["STATE_MACHINE_ARN"]) == (
        f"arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:stateMachine:"
        f"{STATE_MACHINE_NAME}"
    )
    assert supervisor["DATA_BUCKET"] == {"Ref": "DataBucket"}
    assert supervisor["INGEST_SWITCH_PARAMETER"] == SWITCH


@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_package_holds_only_its_own_directory(artifact, name):
    with artifact(f"{name}.zip") as zf:
        names = zf.namelist()
    assert f"functions/{name}/handler.py" in names
    strays = [n for n in names if not n.startswith(f"functions/{name}/") or "__pycache__" in n]
    assert strays == []


def test_layers_are_python312_arm64(template):
    layers = template.of_type("AWS::Lambda::LayerVersion")
    assert set(layers) == {"CoreLambdaLayer", "DepsLambdaLayer"}
    for layer in layers.values():
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def _imports(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_core_layer_ships_the_package_without_local_only_modules(artifact):
    with artifact("core.zip") as zf:
        names = zf.namelist()
        offenders = {
            name: sorted(_imports(zf.read(name).decode()) & set(LOCAL_ONLY))
            for name in names
            if name.endswith(".py")
        }
    assert "python/tradelake/__init__.py" in names
    assert "python/tradelake/schema.py" in names
    assert all(n.startswith("python/tradelake/") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # A module that needs pyarrow, duckdb or websockets would fail to import in Lambda: add it
    # to the `!python/tradelake/...` exclusions of layers.core in serverless.yml.
    assert {k: v for k, v in offenders.items() if v} == {}


def test_deps_layer_is_aarch64_cp312_and_complete(artifact, tmp_path):
    with artifact("deps.zip") as zf:
        names = zf.namelist()
        zf.extractall(tmp_path)
    tops = {n.split("/")[1] for n in names if n.count("/") >= 2}
    for package in ("websocket", "orjson", "aws_lambda_powertools", "aws_xray_sdk", "wrapt"):
        assert package in tops, f"{package} missing from the deps layer"
    for never in ("boto3", "botocore", *LOCAL_ONLY):
        assert never not in tops
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "python/.installed" not in names
    # The same check as `make layer`, on what actually ships.
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_layer.py"), str(tmp_path / "python")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- Firehose -------------------------------------------------------------------------------


@pytest.fixture
def firehose(template) -> dict[str, Any]:
    _, stream = template.one("AWS::KinesisFirehose::DeliveryStream")
    assert stream["Properties"]["DeliveryStreamType"] == "DirectPut"
    return stream["Properties"]["ExtendedS3DestinationConfiguration"]


def _processor(destination: dict[str, Any], type_: str) -> dict[str, str]:
    processors = destination["ProcessingConfiguration"]["Processors"]
    (found,) = [p for p in processors if p["Type"] == type_]
    return {p["ParameterName"]: p["ParameterValue"] for p in found.get("Parameters", [])}


def test_firehose_deaggregates_packed_json_records(firehose):
    assert firehose["ProcessingConfiguration"]["Enabled"] is True
    types = [p["Type"] for p in firehose["ProcessingConfiguration"]["Processors"]]
    assert types == ["RecordDeAggregation", "MetadataExtraction", "AppendDelimiterToRecord"]
    assert _processor(firehose, "RecordDeAggregation") == {"SubRecordType": "JSON"}


def test_firehose_partitions_by_symbol_and_event_hour(firehose):
    assert firehose["DynamicPartitioningConfiguration"]["Enabled"] is True
    extraction = _processor(firehose, "MetadataExtraction")
    assert extraction["JsonParsingEngine"] == "JQ-1.6"
    query = extraction["MetadataExtractionQuery"]
    assert "symbol: .symbol" in query
    for key, fmt in (("year", "%Y"), ("month", "%m"), ("day", "%d"), ("hour", "%H")):
        # EVENT time: .ts is epoch millis of the exchange timestamp.
        assert f'{key}: (.ts/1000|floor|strftime("{fmt}"))' in query
    assert firehose["Prefix"] == (
        "trades/symbol=!{partitionKeyFromQuery:symbol}/year=!{partitionKeyFromQuery:year}/"
        "month=!{partitionKeyFromQuery:month}/day=!{partitionKeyFromQuery:day}/"
        "hour=!{partitionKeyFromQuery:hour}/"
    )
    keys = re.findall(r"(\w+)=!\{partitionKeyFromQuery:(\w+)\}", firehose["Prefix"])
    assert [k for k, _ in keys] == [c.name for c in PARTITION_KEYS]
    assert all(k == v for k, v in keys)


def test_firehose_error_prefix(firehose):
    prefix = firehose["ErrorOutputPrefix"]
    assert prefix.startswith("errors/")
    assert "!{firehose:error-output-type}" in prefix


def test_firehose_converts_to_parquet_from_the_glue_trades_table(firehose):
    conversion = firehose["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert conversion["InputFormatConfiguration"]["Deserializer"] == {
        "HiveJsonSerDe": {"TimestampFormats": ["millis"]}
    }
    assert conversion["OutputFormatConfiguration"]["Serializer"] == {
        "ParquetSerDe": {"Compression": "SNAPPY"}
    }
    schema = conversion["SchemaConfiguration"]
    assert schema["DatabaseName"] == {"Ref": "GlueDatabase"}
    assert schema["TableName"] == {"Ref": "TradesTable"}
    assert schema["VersionId"] == "LATEST"
    assert schema["RoleARN"] == {"Fn::GetAtt": ["FirehoseDeliveryRole", "Arn"]}
    assert firehose["CompressionFormat"] == "UNCOMPRESSED"
    assert firehose["BufferingHints"]["SizeInMBs"] >= 64
    assert 60 <= firehose["BufferingHints"]["IntervalInSeconds"] <= 900


def test_firehose_logs_delivery_errors(template, firehose):
    logging = firehose["CloudWatchLoggingOptions"]
    assert logging["Enabled"] is True
    assert logging["LogGroupName"] == {"Ref": "FirehoseLogGroup"}
    assert logging["LogStreamName"] == {"Ref": "FirehoseS3DeliveryLogStream"}
    assert firehose["BucketARN"] == {"Fn::GetAtt": ["DataBucket", "Arn"]}
    assert firehose["RoleARN"] == {"Fn::GetAtt": ["FirehoseDeliveryRole", "Arn"]}


# --- Glue: one source of columns --------------------------------------------------------------


def _columns(columns: list[dict[str, str]]) -> list[tuple[str, str]]:
    return [(c["Name"], c["Type"]) for c in columns]


def test_glue_columns_are_schema_py(template):
    trades = template.props("TradesTable")["TableInput"]
    gaps = template.props("GapsTable")["TableInput"]
    assert trades["Name"] == "trades_stored"  # `trades` is the de-duplicating Athena view
    assert gaps["Name"] == "gaps"
    assert _columns(trades["StorageDescriptor"]["Columns"]) == [
        (c.name, c.type) for c in TRADE_COLUMNS
    ]
    assert _columns(trades["PartitionKeys"]) == [(c.name, c.type) for c in PARTITION_KEYS]
    assert all(c.type == "string" for c in PARTITION_KEYS)
    assert _columns(gaps["StorageDescriptor"]["Columns"]) == [(c.name, c.type) for c in GAP_COLUMNS]
    assert "PartitionKeys" not in gaps


def test_generated_glue_columns_file_is_up_to_date():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "glue_columns.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_glue_tables_formats_and_locations(template):
    database = template.props("GlueDatabase")["DatabaseInput"]["Name"]
    assert database == {"Fn::Join": ["_", {"Fn::Split": ["-", "tradelake_ci"]}]}
    trades = template.props("TradesTable")["TableInput"]["StorageDescriptor"]
    assert trades["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert resolve(trades["Location"]) == "s3://tradelake-ci-<AWS::AccountId>-<AWS::Region>/trades/"
    gaps = template.props("GapsTable")["TableInput"]["StorageDescriptor"]
    assert gaps["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert resolve(gaps["Location"]) == "s3://tradelake-ci-<AWS::AccountId>-<AWS::Region>/gaps/"


# --- the data bucket ----------------------------------------------------------------------------


def test_bucket_is_private_encrypted_and_expires_scratch(template):
    bucket = template.props("DataBucket")
    assert resolve(bucket["BucketName"]) == "tradelake-ci-<AWS::AccountId>-<AWS::Region>"
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"}
    expiring = {
        r["Prefix"]: r["ExpirationInDays"]
        for r in bucket["LifecycleConfiguration"]["Rules"]
        if r["Status"] == "Enabled" and "ExpirationInDays" in r
    }
    assert 0 < expiring["athena-results/"] <= 30


def test_no_lifecycle_rule_expires_firehose_errors(template):
    # Firehose error output is the only copy of its records (issue 8): a cheaper storage class is
    # fine, an expiry is not — neither by a rule for errors/ nor by one covering the whole bucket.
    rules = template.props("DataBucket")["LifecycleConfiguration"]["Rules"]
    covering = [
        r
        for r in rules
        if r["Status"] == "Enabled"
        and ("errors/".startswith(r.get("Prefix", "")) or r.get("Prefix", "").startswith("errors/"))
    ]
    assert any(r.get("Prefix") == "errors/" for r in covering)
    for rule in covering:
        assert "ExpirationInDays" not in rule, rule
        assert "ExpirationDate" not in rule, rule
        assert "Expiration" not in rule.get("Filter", {}), rule


def test_bucket_policy_denies_plain_http(template):
    _, policy = next(
        (k, v)
        for k, v in template.of_type("AWS::S3::BucketPolicy").items()
        if v["Properties"]["Bucket"] == {"Ref": "DataBucket"}
    )
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Principal"] == "*"
    assert deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {resolve(r) for r in deny["Resource"]} == {"<DataBucket.Arn>", "<DataBucket.Arn>/*"}


def test_bucket_notifies_partitions_only_after_the_permission_exists(template):
    assert "PartitionsS3Permission" in template.depends_on("DataBucket")
    permission = template.props("PartitionsS3Permission")
    assert permission["Principal"] == "s3.amazonaws.com"
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["FunctionName"] == {"Fn::GetAtt": ["PartitionsLambdaFunction", "Arn"]}
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
    # Built from the bucket NAME (no Ref to the bucket: that would be a cycle).
    bucket_name = resolve(template.props("DataBucket")["BucketName"])
    assert resolve(permission["SourceArn"]) == f"arn:<AWS::Partition>:s3:::{bucket_name}"
    assert "DataBucket" not in json.dumps(permission)


def test_bucket_notification_filters(template):
    configs = template.props("DataBucket")["NotificationConfiguration"]["LambdaConfigurations"]
    filters = {}
    for config in configs:
        assert config["Event"] == "s3:ObjectCreated:*"
        assert config["Function"] == {"Fn::GetAtt": ["PartitionsLambdaFunction", "Arn"]}
        rules = {r["Name"]: r["Value"] for r in config["Filter"]["S3Key"]["Rules"]}
        filters[rules["prefix"]] = rules.get("suffix")
    # rollups/ is registered by the rollup function itself, after its query succeeded.
    assert filters == {"trades/": ".parquet"}


def test_no_custom_resources(template):
    # e.g. `events: - s3: existing: true` or a non-CloudFormation EventBridge rule.
    custom = [
        k
        for k, v in template.resources.items()
        if v["Type"].startswith("Custom::") or v["Type"] == "AWS::CloudFormation::CustomResource"
    ]
    assert custom == []


# --- IAM ------------------------------------------------------------------------------------------


def test_no_wildcard_resource_except_for_actions_without_resource_permissions(template):
    offenders = []
    for role_id in template.of_type("AWS::IAM::Role"):
        for statement in template.policy_statements(role_id):
            if statement["Effect"] != "Allow":
                continue
            actions = _list(statement["Action"])
            assert not [a for a in actions if "*" in a], f"{role_id}: wildcard action {actions}"
            if "*" in _list(statement["Resource"]):
                offenders += [(role_id, a) for a in actions if a not in STAR_ACTIONS]
    assert offenders == []


def _grants(template, role_id: str, action: str) -> list[str]:
    return [
        resolve(resource)
        for statement in template.policy_statements(role_id)
        if statement["Effect"] == "Allow" and action in _list(statement["Action"])
        for resource in _list(statement["Resource"])
    ]


def test_ingest_role(template):
    assert _grants(template, "IngestRole", "firehose:PutRecordBatch") == [
        "<TradesDeliveryStream.Arn>"
    ]
    for role_id in template.of_type("AWS::IAM::Role"):
        if role_id != "IngestRole":
            assert not _grants(template, role_id, "firehose:PutRecordBatch")
    state = {"<DataBucket.Arn>/_state/*", "<DataBucket.Arn>/gaps/*"}
    assert set(_grants(template, "IngestRole", "s3:PutObject")) == state
    assert set(_grants(template, "IngestRole", "s3:GetObject")) == state
    assert _grants(template, "IngestRole", "ssm:GetParameter") == [
        f"arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter{SWITCH}"
    ]
    assert _grants(template, "IngestRole", "logs:PutLogEvents") == ["<IngestLogGroup.Arn>"]


def test_partitions_role(template):
    glue = "arn:<AWS::Partition>:glue:<AWS::Region>:<AWS::AccountId>"
    expected = {
        f"{glue}:catalog",
        f"{glue}:database/<GlueDatabase>",
        f"{glue}:table/<GlueDatabase>/<TradesTable>",
        f"{glue}:table/<GlueDatabase>/<GapsTable>",
    }
    for action in ("glue:GetTable", "glue:BatchCreatePartition", "glue:GetPartition"):
        assert set(_grants(template, "PartitionsRole", action)) == expected
    assert not _grants(template, "PartitionsRole", "s3:GetObject")


def test_supervisor_role(template):
    machine = (
        "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:stateMachine:"
        f"{STATE_MACHINE_NAME}"
    )
    assert _grants(template, "SupervisorRole", "states:ListExecutions") == [machine]
    assert _grants(template, "SupervisorRole", "states:StartExecution") == [machine]
    assert _grants(template, "SupervisorRole", "states:DescribeExecution") == [
        machine.replace(":stateMachine:", ":execution:") + ":*"
    ]
    assert _grants(template, "SupervisorRole", "s3:GetObject") == ["<DataBucket.Arn>/_state/*"]
    assert not _grants(template, "SupervisorRole", "s3:PutObject")
    assert len(_grants(template, "SupervisorRole", "ssm:GetParameter")) == 1


def test_workflow_role(template):
    assert set(_grants(template, "IngestWorkflowRole", "lambda:InvokeFunction")) == {
        "<IngestLambdaFunction.Arn>",
        "<IngestLambdaFunction.Arn>:*",
    }
    (arn,) = _grants(template, "IngestWorkflowRole", "states:StartExecution")
    assert arn.endswith(f":stateMachine:{STATE_MACHINE_NAME}")
    # Fire-and-forget startExecution: no .sync, so no managed EventBridge rule permissions.
    assert not _grants(template, "IngestWorkflowRole", "events:PutRule")


def test_firehose_role(template):
    trust = template.props("FirehoseDeliveryRole")["AssumeRolePolicyDocument"]["Statement"]
    assert trust[0]["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert set(_grants(template, "FirehoseDeliveryRole", "s3:PutObject")) == {
        "<DataBucket.Arn>/trades/*",
        "<DataBucket.Arn>/errors/*",
    }
    assert "glue:GetTableVersions" in {
        a for s in template.policy_statements("FirehoseDeliveryRole") for a in _list(s["Action"])
    }
    (stream,) = _grants(template, "FirehoseDeliveryRole", "logs:PutLogEvents")
    assert stream.endswith(":log-group:<FirehoseLogGroup>:log-stream:<FirehoseS3DeliveryLogStream>")


# --- the ingest workflow --------------------------------------------------------------------------


@pytest.fixture
def definition(template) -> dict[str, Any]:
    return template.state_machine_definition()[0]


def test_state_machine(template):
    _, machine = template.one("AWS::StepFunctions::StateMachine")
    props = machine["Properties"]
    assert props["StateMachineName"] == STATE_MACHINE_NAME
    assert props["StateMachineType"] == "STANDARD"
    assert props["RoleArn"] == {"Fn::GetAtt": ["IngestWorkflowRole", "Arn"]}
    logging = props["LoggingConfiguration"]
    assert logging["Level"] == "ERROR"
    assert logging["IncludeExecutionData"] is False
    assert logging["Destinations"] == [
        {
            "CloudWatchLogsLogGroup": {
                "LogGroupArn": {"Fn::GetAtt": ["IngestWorkflowLogGroup", "Arn"]}
            }
        }
    ]


def test_ingest_task_invokes_the_ingest_function_with_the_cursor(template, definition):
    _, mapping = template.state_machine_definition()
    ingest = definition["States"]["Ingest"]
    assert definition["StartAt"] == "Ingest"
    assert ingest["Resource"] == "arn:aws:states:::lambda:invoke"
    placeholder = re.fullmatch(r"\$\{(\w+)\}", ingest["Parameters"]["FunctionName"])
    assert placeholder is not None
    assert mapping[placeholder[1]] == {"Fn::GetAtt": ["IngestLambdaFunction", "Arn"]}
    assert ingest["Parameters"]["Payload"] == {
        "shard.$": "$.shard",
        "cursor.$": "$.cursor",
        "generation.$": "$.generation",
        "loop.$": "$.loop",
    }
    assert ingest["OutputPath"] == "$.Payload"
    assert ingest["TimeoutSeconds"] > 900  # the function's own timeout
    assert ingest["Next"] == "Continue?"


def test_ingest_task_retries_service_errors_and_catches_crashes(definition):
    ingest = definition["States"]["Ingest"]
    (retry,) = ingest["Retry"]
    assert set(retry["ErrorEquals"]) == {
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    }
    assert retry["MaxAttempts"] >= 3
    assert retry["BackoffRate"] >= 2
    assert retry["JitterStrategy"] == "FULL"
    (catch,) = ingest["Catch"]
    assert {"Lambda.Unknown", "States.Timeout"} <= set(catch["ErrorEquals"])
    # Timeouts and crashes only: a handler's own exception must fail the execution.
    assert not {"States.ALL", "States.TaskFailed"} & set(catch["ErrorEquals"])
    assert catch["ResultPath"] == "$.error"  # keeps $.cursor: the loop goes on from it
    assert catch["Next"] == "Recover"
    recover = definition["States"]["Recover"]
    assert recover["Type"] == "Pass"
    assert recover["Parameters"] == {
        "shard.$": "$.shard",
        "cursor.$": "$.cursor",
        "generation.$": "$.generation",
        "loop.$": "States.MathAdd($.loop, 1)",
        "continue": True,
    }
    assert recover["Next"] == "Continue?"


def test_choice_stops_continues_as_new_or_loops(definition):
    custom = yaml.safe_load((ROOT / "serverless.yml").read_text())["custom"]
    loops = custom["loopsPerExecution"]
    choice = definition["States"]["Continue?"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {"Variable": "$.continue", "BooleanEquals": False, "Next": "Stopped"},
        {"Variable": "$.loop", "NumericGreaterThanEquals": loops, "Next": "ContinueAsNew"},
    ]
    assert choice["Default"] == "Ingest"
    # ~8 history events per loop (~30 with every retry): well below 25,000.
    assert loops * 30 < 25_000
    assert definition["States"]["Stopped"]["Type"] == "Succeed"


def test_continue_as_new_starts_the_next_generation(definition):
    state = definition["States"]["ContinueAsNew"]
    assert state["Resource"] == "arn:aws:states:::states:startExecution"  # not .sync
    assert state["End"] is True
    params = state["Parameters"]
    assert params["StateMachineArn.$"] == "$$.StateMachine.Id"
    assert params["Name.$"] == (
        "States.Format('ingest-{}-{}', $.shard, States.MathAdd($.generation, 1))"
    )
    assert params["Input"] == {
        "shard.$": "$.shard",
        "cursor.$": "$.cursor",
        "generation.$": "States.MathAdd($.generation, 1)",
        "loop": 0,
    }
    (catch,) = state["Catch"]
    assert catch["ErrorEquals"] == ["StepFunctions.ExecutionAlreadyExistsException"]
    assert definition["States"][catch["Next"]]["Type"] == "Succeed"


# --- supervisor triggers, the switch, logs, alarms ---------------------------------------------


def _rules_targeting(template, function_id: str) -> list[dict[str, Any]]:
    return [
        rule["Properties"]
        for rule in template.of_type("AWS::Events::Rule").values()
        if {"Fn::GetAtt": [function_id, "Arn"]} in [t["Arn"] for t in rule["Properties"]["Targets"]]
    ]


def test_supervisor_runs_every_5_minutes_and_on_failed_executions(template):
    rules = _rules_targeting(template, "SupervisorLambdaFunction")
    schedules = [r["ScheduleExpression"] for r in rules if "ScheduleExpression" in r]
    assert schedules == ["rate(5 minutes)"]
    (pattern,) = [r["EventPattern"] for r in rules if "EventPattern" in r]
    assert pattern["source"] == ["aws.states"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert set(pattern["detail"]["status"]) == {"FAILED", "TIMED_OUT", "ABORTED"}
    (arn,) = pattern["detail"]["stateMachineArn"]
    assert resolve(arn).endswith(f":stateMachine:{STATE_MACHINE_NAME}")
    permissions = [
        p["Properties"]
        for p in template.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
        and p["Properties"]["FunctionName"] == {"Fn::GetAtt": ["SupervisorLambdaFunction", "Arn"]}
    ]
    assert len(permissions) == 2


def test_no_other_function_is_triggered_by_rules(template):
    assert _rules_targeting(template, "IngestLambdaFunction") == []
    # The partitions function: S3 notifications, and only its daily reconcile schedule.
    (reconcile,) = _rules_targeting(template, "PartitionsLambdaFunction")
    assert "EventPattern" not in reconcile


def test_ingest_switch_parameter(template):
    _, parameter = template.one("AWS::SSM::Parameter")
    props = parameter["Properties"]
    assert props["Name"] == SWITCH
    assert props["Type"] == "String"
    assert props["Value"] == "on"


def test_every_log_group_has_a_retention(template):
    groups = template.of_type("AWS::Logs::LogGroup")
    names = {resolve(g["Properties"]["LogGroupName"]) for g in groups.values()}
    assert {f"/aws/lambda/tradelake-ci-{name}" for name in FUNCTIONS} <= names
    assert f"/aws/vendedlogs/states/{STATE_MACHINE_NAME}" in names
    assert all(g["Properties"].get("RetentionInDays") == 30 for g in groups.values())


def test_the_alarm_topic_e_mails_the_alarm_email_param(template):
    """What reaches the topic (alarms, the supervisor's messages about ingest executions, failed
    rollup runs: test_monitoring.py) is e-mailed to the `alarmEmail` param, when one is set."""
    _, subscription = template.one("AWS::SNS::Subscription")
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert template.data["Parameters"]["AlarmEmail"]["Default"] == "alarms@example.com"


# --- analytics: the Athena workgroup, named queries, rollups, optional QuickSight --------------


def test_athena_workgroup_enforces_engine_v3_encrypted_results_and_a_cutoff(template):
    props = template.props("AthenaWorkGroup")
    assert props["Name"] == "tradelake-ci"
    config = props["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    assert config["EngineVersion"] == {"SelectedEngineVersion": "Athena engine version 3"}
    assert 10_000_000 <= int(config["BytesScannedCutoffPerQuery"]) <= 100_000_000_000
    results = config["ResultConfiguration"]
    bucket = resolve(template.props("DataBucket")["BucketName"])
    assert resolve(results["OutputLocation"]) == f"s3://{bucket}/athena-results/"
    assert results["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}


def test_the_stack_names_are_what_backfill_resolves(template):
    config = RollupConfig.for_stage("ci", "<AWS::AccountId>", "<AWS::Region>")
    assert resolve(template.props("DataBucket")["BucketName"]) == config.data_bucket
    assert template.props("AthenaWorkGroup")["Name"] == config.workgroup
    database = template.props("GlueDatabase")["DatabaseInput"]["Name"]
    separator, parts = database["Fn::Join"]
    assert (separator, parts["Fn::Split"][0]) == ("_", "-")  # every '-' of the stage becomes '_'
    assert parts["Fn::Split"][1].replace("-", "_") == config.glue_database
    assert template.props("TradesTable")["TableInput"]["Name"] == config.trades_table


def test_named_queries_are_the_sql_files(template):
    queries = {
        q["Properties"]["Name"]: q["Properties"]
        for q in template.of_type("AWS::Athena::NamedQuery").values()
    }
    assert set(queries) == set(QUERIES) == {p.stem for p in SQL_DIR.glob("*.sql")}
    for name, props in queries.items():
        assert props["QueryString"] == (SQL_DIR / f"{name}.sql").read_text(), name
        assert props["WorkGroup"] == {"Ref": "AthenaWorkGroup"}
        assert props["Database"] == {"Ref": "GlueDatabase"}


def test_generated_named_queries_file_is_up_to_date():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "named_queries.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "logical_id"), [("ohlcv_1m", "Ohlcv1mTable"), ("ohlcv_1h", "Ohlcv1hTable")]
)
def test_rollup_tables_are_schema_py(template, name, logical_id):
    table = template.props(logical_id)["TableInput"]
    assert table["Name"] == name
    storage = table["StorageDescriptor"]
    assert _columns(storage["Columns"]) == [(c.name, c.type) for c in ROLLUP_COLUMNS[name]]
    assert _columns(table["PartitionKeys"]) == [
        (c.name, c.type) for c in ROLLUP_PARTITION_KEYS[name]
    ]
    assert storage["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    bucket = resolve(template.props("DataBucket")["BucketName"])
    assert resolve(storage["Location"]) == f"s3://{bucket}/rollups/{name}/"
    assert set(ROLLUP_COLUMNS) == set(ROLLUPS)


def test_no_partition_key_is_named_like_a_column(template):
    """Athena refuses such a table (ohlcv_1h has the column `hour`)."""
    for logical_id, table in template.of_type("AWS::Glue::Table").items():
        given = table["Properties"]["TableInput"]
        keys = {c["Name"] for c in given.get("PartitionKeys", [])}
        columns = {c["Name"] for c in given["StorageDescriptor"]["Columns"]}
        assert keys & columns == set(), logical_id


def test_rollup_function_runs_hourly_after_firehose_flushed(template):
    (rule,) = _rules_targeting(template, "RollupLambdaFunction")
    assert rule["ScheduleExpression"] == "cron(15 * * * ? *)"
    env = template.function("rollup")["Environment"]["Variables"]
    assert env["DATA_BUCKET"] == {"Ref": "DataBucket"}
    assert env["GLUE_DATABASE"] == {"Ref": "GlueDatabase"}
    assert env["TRADES_TABLE"] == {"Ref": "TradesTable"}
    assert env["ATHENA_WORKGROUP"] == {"Ref": "AthenaWorkGroup"}
    assert int(env["ROLLUP_LOOKBACK_HOURS"]) >= 2
    (invoke,) = [
        v
        for v in template.of_type("AWS::Lambda::EventInvokeConfig").values()
        if v["Properties"]["FunctionName"] == {"Ref": "RollupLambdaFunction"}
    ]
    assert invoke["Properties"]["MaximumRetryAttempts"] == 0


def test_rollup_role(template):
    workgroup = (
        "arn:<AWS::Partition>:athena:<AWS::Region>:<AWS::AccountId>:workgroup/<AthenaWorkGroup>"
    )
    for action in ("athena:StartQueryExecution", "athena:GetQueryExecution"):
        assert _grants(template, "RollupRole", action) == [workgroup]
    assert _grants(template, "RollupRole", "s3:DeleteObject") == ["<DataBucket.Arn>/rollups/*"]
    assert set(_grants(template, "RollupRole", "s3:PutObject")) == {
        "<DataBucket.Arn>/rollups/*",
        "<DataBucket.Arn>/athena-results/*",
    }
    assert "<DataBucket.Arn>/trades/*" in _grants(template, "RollupRole", "s3:GetObject")
    glue = "arn:<AWS::Partition>:glue:<AWS::Region>:<AWS::AccountId>"
    rollup_tables = {f"{glue}:table/<GlueDatabase>/<{t}>" for t in ("Ohlcv1mTable", "Ohlcv1hTable")}
    catalog = {f"{glue}:catalog", f"{glue}:database/<GlueDatabase>"}
    assert set(_grants(template, "RollupRole", "glue:BatchCreatePartition")) == (
        catalog | rollup_tables
    )
    view = f"{glue}:table/<GlueDatabase>/trades"
    assert set(_grants(template, "RollupRole", "glue:UpdateTable")) == catalog | {view}
    assert set(_grants(template, "RollupRole", "glue:GetTable")) == catalog | rollup_tables | {
        view,
        f"{glue}:table/<GlueDatabase>/<TradesTable>",
    }
    assert _grants(template, "RollupRole", "logs:PutLogEvents") == ["<RollupLogGroup.Arn>"]
    assert not _grants(template, "PartitionsRole", "athena:StartQueryExecution")


def test_the_supervisor_tells_the_alarm_topic_as_its_stage(template):
    """An ingest execution that ended badly is told by the supervisor (tradelake/supervise.py),
    named for the stage the message says `tradelake status --stage` of."""
    env = template.function("supervisor")["Environment"]["Variables"]
    assert env["ALARM_TOPIC_ARN"] == {"Ref": "AlarmTopic"}
    assert env["STAGE"] == "ci"


QUICKSIGHT = {
    "QuickSightAthenaRole": "AWS::IAM::Role",
    "QuickSightDataSource": "AWS::QuickSight::DataSource",
    "QuickSightTradesDataSet": "AWS::QuickSight::DataSet",
    "QuickSightOhlcv1mDataSet": "AWS::QuickSight::DataSet",
    "QuickSightOhlcv1hDataSet": "AWS::QuickSight::DataSet",
    "QuickSightDashboard": "AWS::QuickSight::Dashboard",
}


def test_quicksight_is_off_unless_a_principal_is_given(template):
    parameter = template.data["Parameters"]["QuickSightPrincipal"]
    assert parameter["Default"] == ""
    assert template.data["Conditions"]["HasQuickSight"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "QuickSightPrincipal"}, ""]}]
    }
    conditional = {k: v["Type"] for k, v in template.resources.items() if "Condition" in v}
    assert {k: t for k, t in conditional.items() if k.startswith("QuickSight")} == QUICKSIGHT
    assert all(template.resources[k]["Condition"] == "HasQuickSight" for k in QUICKSIGHT)
    assert not [
        k
        for k, v in template.resources.items()
        if "QuickSight" in v["Type"] and k not in QUICKSIGHT
    ]


def test_quicksight_reads_the_view_and_the_rollups_through_the_workgroup(template):
    source = template.props("QuickSightDataSource")
    assert source["Type"] == "ATHENA"
    assert source["DataSourceParameters"]["AthenaParameters"]["WorkGroup"] == {
        "Ref": "AthenaWorkGroup"
    }
    (trades,) = template.props("QuickSightTradesDataSet")["PhysicalTableMap"].values()
    assert '"<GlueDatabase>"."trades"' in resolve(trades["CustomSql"]["SqlQuery"])
    for logical_id, table in (
        ("QuickSightOhlcv1mDataSet", "Ohlcv1mTable"),
        ("QuickSightOhlcv1hDataSet", "Ohlcv1hTable"),
    ):
        (physical,) = template.props(logical_id)["PhysicalTableMap"].values()
        assert physical["RelationalTable"]["Name"] == {"Ref": table}
    for logical_id in QUICKSIGHT:
        for permission in template.props(logical_id).get("Permissions", []):
            assert permission["Principal"] == {"Ref": "QuickSightPrincipal"}


def test_quicksight_dashboard_has_the_original_visuals_and_candles(template):
    definition = template.props("QuickSightDashboard")["Definition"]
    (sheet,) = definition["Sheets"]
    kinds = [next(iter(visual)) for visual in sheet["Visuals"]]
    assert kinds == ["HeatMapVisual", "LineChartVisual", "ComboChartVisual"]
    heat_map = sheet["Visuals"][0]["HeatMapVisual"]["ChartConfiguration"]
    limit = heat_map["SortConfiguration"]["HeatMapRowItemsLimitConfiguration"]
    assert limit["ItemsLimit"] == 50
    wells = heat_map["FieldWells"]["HeatMapAggregatedFieldWells"]
    assert wells["Columns"][0]["CategoricalDimensionField"]["Column"]["ColumnName"] == "side"
    assert wells["Rows"][0]["NumericalDimensionField"]["Column"]["ColumnName"] == "price"
    combo = sheet["Visuals"][2]["ComboChartVisual"]["ChartConfiguration"]["FieldWells"]
    bars = combo["ComboChartAggregatedFieldWells"]["BarValues"]
    lines = combo["ComboChartAggregatedFieldWells"]["LineValues"]
    assert [b["NumericalMeasureField"]["Column"]["ColumnName"] for b in bars] == [
        "buy_volume",
        "sell_volume",
    ]
    assert [m["NumericalMeasureField"]["Column"]["ColumnName"] for m in lines] == [
        "open",
        "high",
        "low",
        "close",
    ]
    declared = {d["Identifier"] for d in definition["DataSetIdentifierDeclarations"]}
    used = set(re.findall(r'"DataSetIdentifier": "([^"]+)"', json.dumps(definition)))
    assert used <= declared


# --- the template as a whole ------------------------------------------------------------------


def test_cfn_lint_is_clean(packaged):
    # Errors and warnings alike (`make package` fails on both); the few warnings that osls's
    # own output triggers are waived per resource, with a reason, in resources/security.yml.
    matches = lint_file(packaged / "cloudformation-template-update-stack.json")
    assert [str(m) for m in matches] == []


def test_zips_are_what_the_template_deploys(template, packaged):
    keys = [
        resolve(p["Properties"]["Code"]["S3Key"])
        for p in template.of_type("AWS::Lambda::Function").values()
    ] + [
        resolve(p["Properties"]["Content"]["S3Key"])
        for p in template.of_type("AWS::Lambda::LayerVersion").values()
    ]
    for key in keys:
        name = key.rsplit("/", 1)[1]
        assert zipfile.is_zipfile(packaged / name), name


# --- issue 8: no partition left unregistered ------------------------------------------------


def test_partition_events_that_keep_failing_go_to_an_encrypted_queue(template):
    config = next(
        v["Properties"]
        for v in template.of_type("AWS::Lambda::EventInvokeConfig").values()
        if v["Properties"]["FunctionName"] == {"Ref": "PartitionsLambdaFunction"}
    )
    assert config["MaximumRetryAttempts"] == 2
    destination = config["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {"Fn::GetAtt": ["PartitionsFailureQueue", "Arn"]}
    queue = template.resources["PartitionsFailureQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    props = queue["Properties"]
    assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props
    assert props["MessageRetentionPeriod"] == 14 * 24 * 3600
    # Lambda sends to the destination with the function's own role.
    assert _grants(template, "PartitionsRole", "sqs:SendMessage") == [
        "<PartitionsFailureQueue.Arn>"
    ]


def test_the_partitions_function_reconciles_daily_and_may_list_trades(template):
    rules = [
        v["Properties"]
        for v in template.of_type("AWS::Events::Rule").values()
        if {"Fn::GetAtt": ["PartitionsLambdaFunction", "Arn"]}
        in [t["Arn"] for t in v["Properties"]["Targets"]]
    ]
    assert [r["ScheduleExpression"] for r in rules] == ["cron(40 3 * * ? *)"]
    env = template.function("partitions")["Environment"]["Variables"]
    bucket = resolve(template.props("DataBucket")["BucketName"])
    assert resolve(env["DATA_BUCKET"]) == bucket
    statement = next(
        s
        for s in template.policy_statements("PartitionsRole")
        if "s3:ListBucket" in _list(s["Action"])
    )
    assert [resolve(r) for r in _list(statement["Resource"])] == [
        f"arn:<AWS::Partition>:s3:::{bucket}"
    ]
    assert statement["Condition"] == {"StringLike": {"s3:prefix": ["trades/*"]}}
    assert not _grants(template, "PartitionsRole", "s3:GetObject")
