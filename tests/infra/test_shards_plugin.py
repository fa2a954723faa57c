"""The shard count reaches the template: reserved concurrency = shards (plugin shards.js).

The supervisor splits the symbols at run time (tradelake/shards.py); the plugin computes the same
count at package time, offline, for the ingest function's ReservedConcurrentExecutions.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aws_world import LambdaContext, load_function, moto_credentials
from infra.test_offline_package import package_with
from packaged import Template
from tradelake.shards import shard_count, shards

ROOT = Path(__file__).resolve().parents[2]
COINS = str.split(
    "BTC ETH XRP SOL ADA DOGE DOT LINK LTC BCH TRX AVAX MATIC UNI ATOM XLM ETC FIL APT ARB "
    "OP NEAR ICP AAVE SAND MANA AXS EOS XTZ THETA ALGO EGLD FTM GRT HBAR KSM MKR NEO QNT "
    "RUNE SNX SUSHI VET XMR ZEC"
)
FORTY_FIVE = [f"{coin}USDT" for coin in COINS]


def test_the_default_symbols_are_one_shard_with_reserved_concurrency_one(
    template: Template,
) -> None:
    ingest = template.function("ingest")
    assert ingest["ReservedConcurrentExecutions"] == 1
    supervisor = template.function("supervisor")["Environment"]["Variables"]
    assert (
        supervisor["TRADELAKE_SYMBOLS"] == ingest["Environment"]["Variables"]["TRADELAKE_SYMBOLS"]
    )
    assert supervisor["SYMBOLS_PER_SHARD"] == "20"


def test_the_workflow_carries_the_shard_and_names_executions_by_it(template: Template) -> None:
    definition, _ = template.state_machine_definition()
    states = definition["States"]
    assert states["Ingest"]["Parameters"]["Payload"]["shard.$"] == "$.shard"
    assert states["Recover"]["Parameters"]["shard.$"] == "$.shard"
    handover = states["ContinueAsNew"]["Parameters"]
    assert (
        handover["Name.$"]
        == "States.Format('ingest-{}-{}', $.shard, States.MathAdd($.generation, 1))"
    )
    assert handover["Input"]["shard.$"] == "$.shard"


def js_counts(cases: list[tuple[list[str], int]]) -> list[int]:
    script = (
        "const {shardCount} = require(process.argv[1]);"
        "const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(cases.map(([s, n]) => shardCount(s, n))));"
    )
    done = subprocess.run(
        ["node", "-e", script, str(ROOT / ".serverless_plugins" / "shards.js")],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    counts: list[int] = json.loads(done.stdout)
    return counts


def test_the_plugin_counts_shards_as_the_core_does() -> None:
    rng = random.Random(8)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    cases: list[tuple[list[str], int]] = [(FORTY_FIVE, 20), (["BTCUSD", "sBTCUSDT"], 1)]
    for _ in range(150):
        n = rng.randint(1, 150)
        symbols = ["".join(rng.choices(alphabet, k=rng.randint(2, 6))) + "USDT" for _ in range(n)]
        cases.append((symbols, rng.randint(10, 20)))
    assert js_counts(cases) == [shard_count(s, n) for s, n in cases]


@pytest.mark.integration
def test_a_45_symbol_configuration_packages_into_three_shards(
    tmp_path: Path, packaged: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = package_with(tmp_path, f"symbols={','.join(FORTY_FIVE)}")
    template = Template(json.loads(path.read_text()))
    assert template.function("ingest")["ReservedConcurrentExecutions"] == 3
    env: dict[str, Any] = template.function("supervisor")["Environment"]["Variables"]
    assert env["TRADELAKE_SYMBOLS"] == ",".join(FORTY_FIVE)
    assert [len(s) for s in shards(FORTY_FIVE)] == [20, 10, 15]

    # The supervisor, given that environment, starts three executions: one per shard.
    arn = "arn:aws:states:eu-west-1:123456789012:stateMachine:tradelake-ci-ingest"
    moto_credentials(
        monkeypatch,
        STATE_MACHINE_ARN=arn,
        TRADELAKE_SYMBOLS=env["TRADELAKE_SYMBOLS"],
        SYMBOLS_PER_SHARD=env["SYMBOLS_PER_SHARD"],
        DATA_BUCKET="tradelake-ci-data",
        CURSOR_KEY=env["CURSOR_KEY"],
        INGEST_SWITCH_PARAMETER=env["INGEST_SWITCH_PARAMETER"],
        POWERTOOLS_METRICS_NAMESPACE="tradelake",
    )
    with mock_aws():
        sfn = boto3.client("stepfunctions")
        sfn.create_state_machine(
            name="tradelake-ci-ingest",
            definition=json.dumps({"StartAt": "I", "States": {"I": {"Type": "Pass", "End": True}}}),
            roleArn="arn:aws:iam::123456789012:role/workflow",
        )
        ssm = boto3.client("ssm")
        ssm.put_parameter(Name=env["INGEST_SWITCH_PARAMETER"], Value="on", Type="String")
        s3 = boto3.client("s3")
        s3.create_bucket(
            Bucket="tradelake-ci-data",
            CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
        )
        result = load_function("supervisor").handler({}, LambdaContext(), sfn=sfn, ssm=ssm, s3=s3)
        names = {e["name"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]}
    assert result["shards"] == 3
    assert names == {"ingest-0-1", "ingest-1-1", "ingest-2-1"}
