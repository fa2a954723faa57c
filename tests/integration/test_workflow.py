"""The packaged ingest workflow, executed by moto's Step Functions interpreter.

The definition comes from the template ``make package`` produced; its Ingest task invokes the
real ingest handler (in-process), which captures from the real simulator over websockets, with
dropped and closed sockets, into moto's Firehose. Two shards run side by side (three symbols, at
most two a shard), each its own chain of executions and its own cursor. Each loop must go round,
hand over to a fresh execution (continue-as-new) with the shard and its cursor, stop cleanly when
switched off, and every trade that reached Firehose must be the simulator's tape outside
declared gaps, none twice.
"""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from itertools import pairwise
from typing import Any

import boto3
import pytest

from aws_world import (
    BUCKET,
    CURSOR_KEY,
    HOUR_NS,
    REGION,
    START_NS,
    SYMBOLS,
    Aws,
    LambdaContext,
    assert_complete,
    load_handler,
)
from moto_sfn import dispatch_lambdas, patch_moto_sfn
from packaged import Template
from tradelake.cursor import Cursor
from tradelake.shards import cursor_key
from tradelake.simulator import Faults, Simulator, SimulatorConfig, synthetic_tape

pytestmark = pytest.mark.integration

DEPLOYED_LOOPS = 400
TEST_LOOPS = 3
STEPS = 7  # three loops, continue-as-new, three loops, continue-as-new, one loop switched off
SHARDS = (("BTCUSD", "BTCUSDT"), ("sBTCUSDT",))  # SYMBOLS_PER_SHARD=2


def resolved_definition(template: Template, function_arn: str) -> tuple[str, str]:
    """The state machine's name and its definition with the function ARN filled in."""
    _, machine = template.one("AWS::StepFunctions::StateMachine")
    definition, mapping = template.state_machine_definition()
    choice = next(s for s in definition["States"].values() if s["Type"] == "Choice")
    rule = next(c for c in choice["Choices"] if "NumericGreaterThanEquals" in c)
    assert rule["NumericGreaterThanEquals"] == DEPLOYED_LOOPS
    rule["NumericGreaterThanEquals"] = TEST_LOOPS  # hand over within a short test
    text = json.dumps(definition)
    for placeholder in mapping:
        text = text.replace(f"${{{placeholder}}}", function_arn)
    assert "${" not in text, text
    return machine["Properties"]["StateMachineName"], text


def create_function(name: str) -> str:
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context): ...\n")
    created = boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    return str(created["FunctionArn"])


def wait_for_the_end(sfn: Any, machine_arn: str, calls: list[Any], budget_s: float) -> list[Any]:
    give_up = time.monotonic() + budget_s
    while time.monotonic() < give_up:
        executions = sfn.list_executions(stateMachineArn=machine_arn)["executions"]
        if len(calls) >= STEPS * len(SHARDS) and all(e["status"] != "RUNNING" for e in executions):
            return sorted(executions, key=lambda e: e["name"])
        time.sleep(0.2)
    raise AssertionError(f"the workflow did not end in {budget_s} s: {len(calls)} steps")


def test_the_packaged_workflow_runs_two_shards_that_loop_hand_over_and_deliver_every_trade_once(
    template: Template, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch_moto_sfn(monkeypatch)
    function_arn = create_function("tradelake-ci-ingest")
    name, definition = resolved_definition(template, function_arn)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="workflow", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    machine_arn = sfn.create_state_machine(name=name, definition=definition, roleArn=role)[
        "stateMachineArn"
    ]

    tape = synthetic_tape(SYMBOLS, START_NS, HOUR_NS, seed=8, rate=0.5)
    faults = Faults(drop_every=1.5, close_every=2.5, seed=4)
    last_steps = threading.Barrier(len(SHARDS), timeout=60)
    with Simulator(tape, SimulatorConfig(compression=3600 / 12, faults=faults)) as sim:
        monkeypatch.setenv("SYMBOLS_PER_SHARD", "2")
        module = load_handler(monkeypatch, sim.url)
        assert module.SHARDS == SHARDS

        def ingest(event: dict[str, Any]) -> Any:
            if sum(e["shard"] == event["shard"] for _, e in calls) >= STEPS:
                last_steps.wait()  # both shards are at their last step
                aws.switch("off")  # read by the handler as this step starts
            return module.handler(
                event,
                LambdaContext(1.0),
                firehose=aws.firehose,
                s3=aws.s3,
                ssm=aws.ssm,
                wall_ns=sim.event_ns,
            )

        calls = dispatch_lambdas(monkeypatch, {"tradelake-ci-ingest": ingest})
        for shard in range(len(SHARDS)):
            sfn.start_execution(
                stateMachineArn=machine_arn,
                name=f"ingest-{shard}-1",
                input=json.dumps({"shard": shard, "cursor": None, "generation": 1, "loop": 0}),
            )
        executions = wait_for_the_end(sfn, machine_arn, calls, budget_s=90)

    assert sim.stats.drops + sim.stats.closes > 0, "sockets were dropped under the workflow"
    assert [e["name"] for e in executions] == [
        f"ingest-{shard}-{g}" for shard in range(len(SHARDS)) for g in (1, 2, 3)
    ]
    assert all(e["status"] == "SUCCEEDED" for e in executions), executions
    for shard, symbols in enumerate(SHARDS):
        events = [event for _, event in calls if event["shard"] == shard]
        assert [(e["generation"], e["loop"]) for e in events] == [
            (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0)
        ]  # fmt: skip
        assert events[0]["cursor"] is None
        for before, after in pairwise(events):
            assert after["cursor"] is not None
            assert set(after["cursor"]["symbols"]) == set(symbols), "the shard's symbols only"
            if before["cursor"] is not None:
                ahead = Cursor.from_json(after["cursor"]).merge(Cursor.from_json(before["cursor"]))
                assert ahead == Cursor.from_json(after["cursor"]), "the cursor only moves forward"
        last_arn = next(e for e in executions if e["name"] == f"ingest-{shard}-3")["executionArn"]
        output = json.loads(sfn.describe_execution(executionArn=last_arn)["output"])
        assert output["continue"] is False, "switched off: a clean stop"
        assert output["shard"] == shard
        key = cursor_key(CURSOR_KEY, shard)
        saved = json.loads(aws.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert Cursor.from_json(saved) == Cursor.from_json(output["cursor"])
    assert_complete(tape, aws)
