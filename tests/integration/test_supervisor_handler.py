"""The supervisor Lambda against moto's Step Functions, SSM, S3 and SNS.

moto runs the state machines for real (``execute_state_machine``): a Pass machine's executions
succeed at once, a Wait machine's stay RUNNING for the test's lifetime — the two situations the
supervisor tells apart — and a Fail machine's fail at once, as in a crash loop. What the
supervisor tells the alarm topic is read from an SQS queue subscribed to it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aws_world import LambdaContext, emf_values, load_function, moto_credentials
from tradelake.cursor import Cursor, SymbolCursor
from tradelake.model import parse_fixed

REGION = "eu-west-1"
BUCKET = "tradelake-test-lake"
CURSOR_KEY = "_state/cursor.json"
SWITCH = "/tradelake/test/ingest"
TOPIC_ARN = f"arn:aws:sns:{REGION}:123456789012:tradelake-test-alarms"
STATE_MACHINE_ARN = f"arn:aws:states:{REGION}:123456789012:stateMachine:tradelake-test-ingest"
ROLE = "arn:aws:iam::123456789012:role/tradelake-test-workflow"
MACHINES = {
    "pass": {"StartAt": "Ingest", "States": {"Ingest": {"Type": "Pass", "End": True}}},
    "wait": {
        "StartAt": "Ingest",
        "States": {"Ingest": {"Type": "Wait", "Seconds": 3600, "End": True}},
    },
    "fail": {
        "StartAt": "Ingest",
        "States": {"Ingest": {"Type": "Fail", "Error": "SymbolsRefused", "Cause": "test"}},
    },
}

SCHEDULE = {
    "version": "0",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "resources": ["arn:aws:events:eu-west-1:123456789012:rule/tradelake-test-supervisor"],
    "detail": {},
}


def status_change(name: str, status: str) -> dict[str, Any]:
    return {
        "version": "0",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "detail": {"name": name, "status": status, "executionArn": f"arn:…:{name}"},
    }


class Wrapped:
    """A boto3 client whose methods can be wrapped one by one; everything else passes through."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.around: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        wrapper = self.around.get(name)
        if wrapper is None:
            return method
        return lambda **kwargs: wrapper(method, **kwargs)


class World:
    """moto's Step Functions, SSM, S3 and SNS with one state machine, the switch, the bucket and
    the alarm topic (a queue subscribed to it keeps what was published)."""

    def __init__(self, machine: str) -> None:
        self.sfn = Wrapped(boto3.client("stepfunctions", region_name=REGION))
        self.ssm = boto3.client("ssm", region_name=REGION)
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        topic = self.sns.create_topic(Name=TOPIC_ARN.rsplit(":", 1)[-1])["TopicArn"]
        assert topic == TOPIC_ARN
        self.inbox = self.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        inbox_arn = self.sqs.get_queue_attributes(QueueUrl=self.inbox, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self.sns.subscribe(TopicArn=TOPIC_ARN, Protocol="sqs", Endpoint=inbox_arn)
        self.arn = self.sfn.client.create_state_machine(
            name="tradelake-test-ingest", definition=json.dumps(MACHINES[machine]), roleArn=ROLE
        )["stateMachineArn"]
        self.s3.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        self.switch("on")

    def switch(self, value: str) -> None:
        self.ssm.put_parameter(Name=SWITCH, Value=value, Type="String", Overwrite=True)

    def checkpoint(self, cursor: Cursor | bytes) -> None:
        body = cursor if isinstance(cursor, bytes) else json.dumps(cursor.to_json()).encode()
        self.s3.put_object(Bucket=BUCKET, Key=CURSOR_KEY, Body=body)

    def start(self, name: str, payload: Any = None) -> None:
        self.sfn.client.start_execution(
            stateMachineArn=self.arn, name=name, input=json.dumps(payload or {})
        )

    def stop(self, name: str) -> None:
        """Abort an execution and wait until it says so (moto's interpreter stops it later)."""
        arn = self.arn.replace(":stateMachine:", ":execution:") + f":{name}"
        self.sfn.client.stop_execution(executionArn=arn)
        for _ in range(200):
            if self.sfn.client.describe_execution(executionArn=arn)["status"] != "RUNNING":
                return
            time.sleep(0.01)
        raise AssertionError(f"{name} did not stop")

    def executions(self) -> dict[str, str]:
        """name → status, settled: waits until no Pass execution is still on its way."""
        for _ in range(100):
            listed = self.sfn.client.list_executions(stateMachineArn=self.arn)["executions"]
            found = {e["name"]: e["status"] for e in listed}
            if "RUNNING" not in found.values() or self.machine_waits():
                return found
            time.sleep(0.02)
        raise AssertionError(f"executions did not settle: {found}")

    def machine_waits(self) -> bool:
        definition = self.sfn.client.describe_state_machine(stateMachineArn=self.arn)["definition"]
        return json.loads(definition)["States"]["Ingest"]["Type"] == "Wait"

    def told(self) -> list[tuple[str, str]]:
        """(subject, message) of each message published to the topic since the last call."""
        got = self.sqs.receive_message(QueueUrl=self.inbox, MaxNumberOfMessages=10)
        messages = got.get("Messages", [])
        for m in messages:
            self.sqs.delete_message(QueueUrl=self.inbox, ReceiptHandle=m["ReceiptHandle"])
        return [(n["Subject"], n["Message"]) for n in (json.loads(m["Body"]) for m in messages)]

    def ended(self, name: str) -> dict[str, Any]:
        """The status change EventBridge delivers for the closed execution ``name``."""
        arn = self.arn.replace(":stateMachine:", ":execution:") + f":{name}"
        found = self.sfn.client.describe_execution(executionArn=arn)
        assert found["status"] != "RUNNING", name
        event = status_change(name, found["status"])
        event["detail"] |= {
            "executionArn": arn,
            "stopDate": int(found["stopDate"].timestamp() * 1000),
        }
        return event

    def input_of(self, name: str) -> Any:
        arn = self.arn.replace(":stateMachine:", ":execution:") + f":{name}"
        return json.loads(self.sfn.client.describe_execution(executionArn=arn)["input"])

    def call_all(self, supervisor: ModuleType, event: Any = SCHEDULE) -> dict[str, Any]:
        result: dict[str, Any] = supervisor.handler(
            event, LambdaContext(), sfn=self.sfn, ssm=self.ssm, s3=self.s3, sns=self.sns
        )
        return result

    def call(self, supervisor: ModuleType, event: Any = SCHEDULE) -> dict[str, Any]:
        """One invocation with the one shard of the default symbols: its decision."""
        result = self.call_all(supervisor, event)
        assert result["shards"] == 1
        [decision] = result["decisions"]
        assert isinstance(decision, dict)
        return decision


@pytest.fixture
def moto_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    moto_credentials(
        monkeypatch,
        STATE_MACHINE_ARN=STATE_MACHINE_ARN,
        TRADELAKE_SYMBOLS="BTCUSD,BTCUSDT,sBTCUSDT",
        DATA_BUCKET=BUCKET,
        CURSOR_KEY=CURSOR_KEY,
        INGEST_SWITCH_PARAMETER=SWITCH,
        POWERTOOLS_METRICS_NAMESPACE="tradelake",
        STAGE="test",
        ALARM_TOPIC_ARN=TOPIC_ARN,
    )
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


@pytest.fixture
def supervisor(moto_env: None) -> ModuleType:
    return load_function("supervisor")


@pytest.fixture
def running_world(moto_env: None) -> World:
    """Executions stay RUNNING (a Wait state), as ingest executions do for days."""
    return World("wait")


@pytest.fixture
def finishing_world(moto_env: None) -> World:
    """Executions succeed at once (a Pass state)."""
    return World("pass")


@pytest.fixture
def failing_world(moto_env: None) -> World:
    """Executions fail at once (a Fail state): a crash loop."""
    return World("fail")


def cursor(ts_ns: int = 1_795_737_605_554_137_578) -> Cursor:
    return Cursor(
        {"BTCUSD": SymbolCursor(ts_ns, {("buy", parse_fixed("87000.5"), parse_fixed("30")): 2})}
    )


def test_none_running_starts_ingest_1(
    supervisor: ModuleType, running_world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert running_world.call(supervisor) == {
        "action": "start",
        "shard": 0,
        "name": "ingest-0-1",
        "generation": 1,
    }
    assert running_world.executions() == {"ingest-0-1": "RUNNING"}
    assert running_world.input_of("ingest-0-1") == {
        "shard": 0,
        "cursor": None,
        "generation": 1,
        "loop": 0,
    }
    assert emf_values(capsys.readouterr().out) == {"IngestStarted": 1.0}


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_one_running_does_nothing(
    supervisor: ModuleType, running_world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    running_world.start("ingest-0-7")
    assert running_world.call(supervisor) == {
        "action": "nothing",
        "reason": "already_running",
        "detail": "ingest-0-7 is running",
        "shard": 0,
    }
    assert running_world.executions() == {"ingest-0-7": "RUNNING"}
    assert emf_values(capsys.readouterr().out) == {}, "the normal case publishes no metric"


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_switched_off_does_nothing(
    supervisor: ModuleType, running_world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    running_world.switch("off")
    assert running_world.call(supervisor)["reason"] == "switched_off"
    assert running_world.executions() == {}
    assert emf_values(capsys.readouterr().out) == {}
    running_world.switch("on")
    assert running_world.call(supervisor)["name"] == "ingest-0-1"


def test_after_ingest_41_finished_it_starts_ingest_42_with_the_checkpoint(
    supervisor: ModuleType, finishing_world: World
) -> None:
    for generation in (39, 40, 41):
        finishing_world.start(f"ingest-0-{generation}")
    finishing_world.start("hand-started-test")
    assert set(finishing_world.executions().values()) == {"SUCCEEDED"}
    finishing_world.checkpoint(cursor())

    event = status_change("ingest-0-41", "FAILED")
    assert finishing_world.call(supervisor, event)["name"] == "ingest-0-42"

    assert finishing_world.input_of("ingest-0-42") == {
        "shard": 0,
        "cursor": cursor().to_json(),
        "generation": 42,
        "loop": 0,
    }
    assert Cursor.from_json(finishing_world.input_of("ingest-0-42")["cursor"]) == cursor()


def race(
    world: World, supervisor: ModuleType, *, after_read: Callable[[], None] | None = None
) -> list[dict[str, Any]]:
    """Two handler calls that both decide before either starts an execution.

    A barrier holds each StartExecution until both invocations have looked at the world; then
    the second waits until the first invocation has returned, so the two never emit metrics at
    the same time (one process holds one Powertools metric set, unlike two Lambdas).
    """
    barrier = threading.Barrier(2, timeout=10)
    first_done = threading.Event()
    order: list[int] = []
    lock = threading.Lock()

    def start_execution(method: Callable[..., Any], **kwargs: Any) -> Any:
        barrier.wait()
        with lock:
            order.append(len(order))
            mine = order[-1]
        if mine == 1:
            first_done.wait(10)
        return method(**kwargs)

    world.sfn.around["start_execution"] = start_execution
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def trigger(event: Any) -> None:
        try:
            results.append(world.call(supervisor, event))
        except BaseException as exc:
            errors.append(exc)
        finally:
            first_done.set()

    threads = [
        threading.Thread(target=trigger, args=(SCHEDULE,)),
        threading.Thread(target=trigger, args=(status_change("ingest-0-3", "TIMED_OUT"),)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    return results


def test_two_simultaneous_triggers_start_one_execution(
    supervisor: ModuleType, running_world: World
) -> None:
    """Same name, same input: Step Functions answers the second with the first execution."""
    running_world.start("ingest-0-3")
    running_world.stop("ingest-0-3")
    running_world.checkpoint(cursor())

    results = race(running_world, supervisor)

    assert running_world.executions() == {"ingest-0-3": "ABORTED", "ingest-0-4": "RUNNING"}
    assert len(results) == 2
    assert {r.get("name") for r in results} == {"ingest-0-4"}


def test_two_triggers_reading_different_checkpoints_start_one_execution(
    supervisor: ModuleType, running_world: World
) -> None:
    """Different inputs: the second gets ExecutionAlreadyExists, sees it running, succeeds."""
    running_world.checkpoint(cursor())
    reads = [0]
    lock = threading.Lock()

    def get_object(method: Callable[..., Any], **kwargs: Any) -> Any:
        """Each read sees a newer checkpoint than the one before (the ingest keeps writing)."""
        with lock:
            response = method(**kwargs)
            reads[0] += 1
            running_world.checkpoint(cursor(ts_ns=cursor().symbols["BTCUSD"].ts_ns + reads[0]))
            return response

    s3 = Wrapped(running_world.s3)
    s3.around["get_object"] = get_object
    running_world.s3 = s3

    results = race(running_world, supervisor)

    assert running_world.executions() == {"ingest-0-1": "RUNNING"}
    assert sorted(r["action"] for r in results) == ["nothing", "start"]
    assert [r["detail"] for r in results if r["action"] == "nothing"] == [
        "ingest-0-1 was started concurrently"
    ]


def hide(world: World, *names: str) -> None:
    """Make ListExecutions stale: it does not show ``names`` yet."""

    def list_executions(method: Callable[..., Any], **kwargs: Any) -> Any:
        response = method(**kwargs)
        response["executions"] = [e for e in response["executions"] if e["name"] not in names]
        return response

    world.sfn.around["list_executions"] = list_executions


def test_a_stale_listing_does_not_start_a_second_execution(
    supervisor: ModuleType, running_world: World
) -> None:
    running_world.start("ingest-0-1", {"cursor": None, "generation": 1, "loop": 7})
    hide(running_world, "ingest-0-1")
    assert running_world.call(supervisor) == {
        "action": "nothing",
        "reason": "already_running",
        "detail": "ingest-0-1 was started concurrently",
        "shard": 0,
    }
    assert running_world.executions() == {"ingest-0-1": "RUNNING"}


def hide_from_running(world: World, *names: str) -> None:
    """Make only the RUNNING listing stale: the full listing shows ``names`` already."""

    def list_executions(method: Callable[..., Any], **kwargs: Any) -> Any:
        response = method(**kwargs)
        if kwargs.get("statusFilter") == "RUNNING":
            response["executions"] = [e for e in response["executions"] if e["name"] not in names]
        return response

    world.sfn.around["list_executions"] = list_executions


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_the_newest_execution_missing_from_the_running_listing_is_confirmed(
    supervisor: ModuleType, running_world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """ingest-0-1 handed over to ingest-0-2 (continue-as-new); ListExecutions, eventually
    consistent, does not list ingest-0-2 as RUNNING yet. DescribeExecution on the newest known
    execution says it runs: no ingest-0-3 beside it."""
    running_world.start("ingest-0-1")
    running_world.stop("ingest-0-1")
    running_world.start("ingest-0-2", {"shard": 0, "cursor": None, "generation": 2, "loop": 0})
    hide_from_running(running_world, "ingest-0-2")
    described: list[str] = []

    def describe_execution(method: Callable[..., Any], **kwargs: Any) -> Any:
        described.append(kwargs["executionArn"].rsplit(":", 1)[-1])
        return method(**kwargs)

    running_world.sfn.around["describe_execution"] = describe_execution
    assert running_world.call(supervisor) == {
        "action": "nothing",
        "reason": "already_running",
        "detail": "ingest-0-2 is running (listed late)",
        "shard": 0,
    }
    assert described == ["ingest-0-2"]
    assert running_world.executions() == {"ingest-0-1": "ABORTED", "ingest-0-2": "RUNNING"}
    assert emf_values(capsys.readouterr().out) == {}


def test_two_shards_get_one_execution_each_with_their_own_checkpoint(
    running_world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three symbols, at most two a shard: shards 0 and 1, each kept running on its own."""
    monkeypatch.setenv("SYMBOLS_PER_SHARD", "2")
    supervisor = load_function("supervisor")
    assert supervisor.SHARDS == (("BTCUSD", "BTCUSDT"), ("sBTCUSDT",))
    running_world.s3.put_object(
        Bucket=BUCKET, Key="_state/cursor-1.json", Body=json.dumps(cursor().to_json()).encode()
    )
    result = running_world.call_all(supervisor)
    assert result["shards"] == 2
    assert [(d["action"], d.get("name")) for d in result["decisions"]] == [
        ("start", "ingest-0-1"),
        ("start", "ingest-1-1"),
    ]
    assert running_world.executions() == {"ingest-0-1": "RUNNING", "ingest-1-1": "RUNNING"}
    assert running_world.input_of("ingest-0-1")["cursor"] is None
    assert running_world.input_of("ingest-1-1") == {
        "shard": 1,
        "cursor": cursor().to_json(),
        "generation": 1,
        "loop": 0,
    }
    assert emf_values(capsys.readouterr().out) == {"IngestStarted": 2.0}

    running_world.stop("ingest-1-1")
    result = running_world.call_all(supervisor)
    assert [(d["action"], d.get("name")) for d in result["decisions"]] == [
        ("nothing", None),
        ("start", "ingest-1-2"),
    ]
    running = [n for n, s in running_world.executions().items() if s == "RUNNING"]
    assert sorted(running) == ["ingest-0-1", "ingest-1-2"]


def test_a_name_used_up_by_a_finished_execution_moves_on(
    supervisor: ModuleType, finishing_world: World
) -> None:
    finishing_world.start("ingest-0-5")
    finishing_world.executions()
    hide(finishing_world, "ingest-0-5")
    finishing_world.start("ingest-0-4")
    finishing_world.executions()
    assert finishing_world.call(supervisor)["name"] == "ingest-0-6"
    assert set(finishing_world.executions()) == {"ingest-0-4", "ingest-0-5", "ingest-0-6"}


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_malformed_checkpoint_fails_and_starts_nothing(
    supervisor: ModuleType, running_world: World
) -> None:
    running_world.checkpoint(b'{"version": 2, "symbols": {"BTCUSD": {"ts_ns": "x", "fills": []}}}')
    with pytest.raises(ValueError, match=r"s3://tradelake-test-lake/_state/cursor.json is corrupt"):
        running_world.call(supervisor)
    running_world.checkpoint(b"[]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        running_world.call(supervisor)
    assert running_world.executions() == {}


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_the_switch_must_exist_and_say_on_or_off(
    supervisor: ModuleType, running_world: World
) -> None:
    running_world.switch("maybe")
    with pytest.raises(ValueError, match="'on' or 'off'"):
        running_world.call(supervisor)
    running_world.ssm.delete_parameter(Name=SWITCH)
    with pytest.raises(LookupError, match=f"{SWITCH} does not exist"):
        running_world.call(supervisor)
    assert running_world.executions() == {}


def test_the_default_clients_are_made_at_cold_start(supervisor: ModuleType) -> None:
    assert {name: c.meta.service_model.service_name for name, c in supervisor.clients.items()} == {
        "sfn": "stepfunctions",
        "ssm": "ssm",
        "s3": "s3",
        "sns": "sns",
    }


# --- an execution that ended badly: one message per shard and hour, and the back-off ------------


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_crash_loop_sends_one_message_and_backs_off_to_the_heartbeat(
    supervisor: ModuleType, failing_world: World
) -> None:
    world = failing_world
    world.start("ingest-0-1", {"shard": 0, "cursor": None, "generation": 1, "loop": 0})
    assert world.executions() == {"ingest-0-1": "FAILED"}

    # The first failure: told, and restarted at once.
    assert world.call(supervisor, world.ended("ingest-0-1"))["name"] == "ingest-0-2"
    ((subject, message),) = world.told()
    assert subject == "tradelake test: ingest-0-1 ended FAILED"
    assert message.startswith(
        "tradelake test: the ingest execution ingest-0-1 (shard 0) ended FAILED at "
    )
    assert "The supervisor restarted shard 0 from its checkpoint as ingest-0-2" in message
    assert "Further failures of this shard within the hour are not sent" in message
    assert f"--execution-arn {world.arn.replace(':stateMachine:', ':execution:')}:ingest-0-1" in (
        message
    )

    # The second, a moment later: restarted, not told.
    assert world.executions()["ingest-0-2"] == "FAILED"
    assert world.call(supervisor, world.ended("ingest-0-2"))["name"] == "ingest-0-3"
    assert world.told() == []

    # The third in 15 minutes: left to the heartbeat, which restarts it.
    assert world.executions()["ingest-0-3"] == "FAILED"
    assert world.call(supervisor, world.ended("ingest-0-3")) == {
        "action": "nothing",
        "reason": "backing_off",
        "detail": "3 or more executions ended badly in the last 15 minutes, so only the"
        " 5-minute heartbeat restarts it",
        "shard": 0,
    }
    assert set(world.executions()) == {"ingest-0-1", "ingest-0-2", "ingest-0-3"}
    assert world.told() == []
    assert world.call(supervisor, SCHEDULE)["name"] == "ingest-0-4"
    assert world.told() == []


def test_a_failure_an_hour_after_the_last_is_told_again(
    supervisor: ModuleType, failing_world: World
) -> None:
    """ingest-0-1 fails and is told; its restart ingest-0-2 fails too, an hour and a second
    later (as its event and the supervisor's clock say): told again."""
    world = failing_world
    world.start("ingest-0-1")
    world.executions()
    assert world.call(supervisor, world.ended("ingest-0-1"))["name"] == "ingest-0-2"
    assert len(world.told()) == 1
    world.executions()
    hour_later = world.ended("ingest-0-1")["detail"]["stopDate"] * 10**6 + 3601 * 10**9
    event = world.ended("ingest-0-2")
    event["detail"]["stopDate"] = hour_later // 10**6
    supervisor.handler(
        event,
        LambdaContext(),
        sfn=world.sfn,
        ssm=world.ssm,
        s3=world.s3,
        sns=world.sns,
        wall_ns=lambda: hour_later,
    )
    ((subject, _),) = world.told()
    assert subject == "tradelake test: ingest-0-2 ended FAILED"


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_failure_the_supervisor_cannot_fix_is_told_with_its_error(
    supervisor: ModuleType, finishing_world: World
) -> None:
    finishing_world.start("ingest-0-5")
    finishing_world.executions()
    finishing_world.switch("maybe")
    with pytest.raises(ValueError, match="'on' or 'off'"):
        finishing_world.call(supervisor, status_change("ingest-0-5", "ABORTED"))
    ((_, message),) = finishing_world.told()
    assert "ingest-0-5 (shard 0) ended ABORTED" in message
    assert "The supervisor failed to restart it: the ingest switch must be 'on' or 'off'" in message


def test_the_heartbeat_tells_nothing(supervisor: ModuleType, failing_world: World) -> None:
    failing_world.start("ingest-0-1")
    failing_world.executions()
    assert failing_world.call(supervisor)["name"] == "ingest-0-2"
    assert failing_world.told() == []
