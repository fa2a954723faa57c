"""The packaged ingest workflow, executed by moto's Step Functions interpreter.

The definition comes from the template ``make package`` produced; its Ingest task invokes the
real ingest handler (in-process), which captures from the real simulator over websockets, with
dropped and closed sockets, into moto's Firehose. The loop must go round, hand over to a fresh
execution (continue-as-new) with the cursor, stop cleanly when switched off, and every trade that
reached Firehose must be the simulator's tape outside declared gaps, none twice.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from itertools import pairwise
from typing import Any

import boto3
import pytest

from aws_world import (
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
from tradelake.simulator import Faults, Simulator, SimulatorConfig, synthetic_tape

pytestmark = pytest.mark.integration

DEPLOYED_LOOPS = 400
TEST_LOOPS = 3
STEPS = 7  # three loops, continue-as-new, three loops, continue-as-new, one loop switched off


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
        if len(calls) >= STEPS and all(e["status"] != "RUNNING" for e in executions):
            return sorted(executions, key=lambda e: e["name"])
        time.sleep(0.2)
    raise AssertionError(f"the workflow did not end in {budget_s} s: {len(calls)} steps")


def test_the_packaged_workflow_loops_hands_over_and_delivers_every_trade_once(
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
    with Simulator(tape, SimulatorConfig(compression=3600 / 12, faults=faults)) as sim:
        module = load_handler(monkeypatch, sim.url)

        def ingest(event: dict[str, Any]) -> Any:
            if len(calls) >= STEPS:
                aws.switch("off")  # read by the handler as this step ends
            return module.handler(
                event,
                LambdaContext(1.0),
                firehose=aws.firehose,
                s3=aws.s3,
                ssm=aws.ssm,
                wall_ns=sim.event_ns,
            )

        calls = dispatch_lambdas(monkeypatch, {"tradelake-ci-ingest": ingest})
        sfn.start_execution(
            stateMachineArn=machine_arn,
            name="ingest-1",
            input=json.dumps({"cursor": None, "generation": 1, "loop": 0}),
        )
        executions = wait_for_the_end(sfn, machine_arn, calls, budget_s=90)

    assert sim.stats.drops + sim.stats.closes > 0, "sockets were dropped under the workflow"
    assert [e["name"] for e in executions] == ["ingest-1", "ingest-2", "ingest-3"]
    assert all(e["status"] == "SUCCEEDED" for e in executions), executions
    events = [event for _, event in calls]
    assert [(e["generation"], e["loop"]) for e in events] == [
        (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0)
    ]  # fmt: skip
    assert events[0]["cursor"] is None
    for before, after in pairwise(events):
        assert after["cursor"] is not None
        if before["cursor"] is not None:
            ahead = Cursor.from_json(after["cursor"]).merge(Cursor.from_json(before["cursor"]))
            assert ahead == Cursor.from_json(after["cursor"]), "the cursor only moves forward"
    last = sfn.describe_execution(executionArn=executions[-1]["executionArn"])
    assert json.loads(last["output"])["continue"] is False, "switched off: a clean stop"
    assert aws.checkpoint() == Cursor.from_json(json.loads(last["output"])["cursor"])
    assert_complete(tape, aws)
