"""The supervisor's decision: one ingest execution per shard while on, names in sequence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradelake.cursor import Cursor, SymbolCursor
from tradelake.supervise import (
    BACKOFF_WINDOW_NS,
    QUIET_NS,
    Ended,
    Nothing,
    Start,
    alert,
    backing_off,
    decide,
    ended_of,
    first_in_the_hour,
    generation_of,
    ingest_input,
    newest_known,
    next_generation,
    outcome,
    parse_name,
    parse_switch,
    summary,
    supervise,
    trigger_of,
)


def test_switched_off_does_nothing_even_with_nothing_running() -> None:
    assert decide(False, [], ["ingest-3"]) == Nothing("switched_off", "ingestion is switched off")


def test_switched_off_wins_over_running() -> None:
    assert decide(False, ["ingest-3"], ["ingest-3"]) == Nothing(
        "switched_off", "ingestion is switched off"
    )


def test_one_running_does_nothing() -> None:
    assert decide(True, ["ingest-0-7"], ["ingest-0-7", "ingest-0-6"]) == Nothing(
        "already_running", "ingest-0-7 is running", 0
    )


def test_another_shards_running_execution_does_not_count() -> None:
    assert decide(True, ["ingest-1-7"], ["ingest-1-7", "ingest-0-6"], shard=0) == Start(
        "ingest-0-7", 7, 0
    )
    assert decide(True, ["ingest-1-7"], ["ingest-1-7"], shard=1) == Nothing(
        "already_running", "ingest-1-7 is running", 1
    )


def test_none_ever_starts_generation_one() -> None:
    assert decide(True, [], []) == Start("ingest-0-1", 1, 0)
    assert decide(True, [], [], shard=2) == Start("ingest-2-1", 1, 2)


def test_after_a_finished_generation_the_next_one_starts() -> None:
    assert decide(True, [], ["ingest-0-41", "ingest-0-40"]) == Start("ingest-0-42", 42)


def test_a_name_from_before_shards_is_shard_0() -> None:
    assert decide(True, [], ["ingest-41", "ingest-40"]) == Start("ingest-0-42", 42)
    assert decide(True, ["ingest-41"], ["ingest-41"]) == Nothing(
        "already_running", "ingest-41 is running", 0
    )


def test_a_hand_started_execution_does_not_reset_the_sequence() -> None:
    assert decide(True, [], ["manual-retry", "ingest-0-41", "x"]) == Start("ingest-0-42", 42)


def test_only_unparsable_names_start_at_one() -> None:
    assert decide(True, [], ["manual-retry", "ingest-", "ingest-x1", "Ingest-5"]) == Start(
        "ingest-0-1", 1
    )


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("ingest-0-1", (0, 1)),
        ("ingest-3-42", (3, 42)),
        ("ingest-1-007", (1, 7)),
        ("ingest-42", (0, 42)),
        ("ingest-", None),
        ("ingest-4-retry", None),
        ("ingest-1-2-3", None),
        ("xingest-4", None),
        ("ingest-4\n", None),
        ("ingest-" + "9" * 19, None),
        ("ingest-12345-1", None),
    ],
)
def test_parse_name(name: str, parsed: tuple[int, int] | None) -> None:
    assert parse_name(name) == parsed
    assert generation_of(name, parsed[0] if parsed else 0) == (parsed[1] if parsed else None)


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 10**12)), max_size=20),
    st.lists(st.text(max_size=12), max_size=5),
    st.integers(0, 3),
)
def test_the_next_generation_is_above_every_known_one_of_the_shard(
    known: list[tuple[int, int]], others: list[str], shard: int
) -> None:
    names = [f"ingest-{s}-{g}" for s, g in known] + others
    gens = [g for s, g in known if s == shard]
    n = next_generation(names, shard)
    assert all(n > g for g in gens)
    assert n == max(gens, default=0) + 1 or any(generation_of(o, shard) is not None for o in others)
    newest = newest_known(names, shard)
    assert newest is None or generation_of(newest, shard) == n - 1


@pytest.mark.parametrize(
    ("value", "on"), [("on", True), (" ON\n", True), ("off", False), ("Off", False)]
)
def test_the_switch_reads_on_and_off(value: str, on: bool) -> None:
    assert parse_switch(value) is on


@pytest.mark.parametrize("value", ["", "true", "1", "enabled", "o n"])
def test_any_other_switch_value_is_an_error(value: str) -> None:
    with pytest.raises(ValueError, match="'on' or 'off'"):
        parse_switch(value)


def cursor() -> Cursor:
    return Cursor({"BTCUSD": SymbolCursor(1_795_737_605_554_137_578, {("buy", 10, 20): 2})})


def test_the_input_carries_the_shard_cursor_generation_and_loop_zero() -> None:
    assert ingest_input(cursor(), 42, 2) == {
        "shard": 2,
        "cursor": cursor().to_json(),
        "generation": 42,
        "loop": 0,
    }


def test_no_cursor_or_an_empty_one_is_null() -> None:
    assert ingest_input(None, 1)["cursor"] is None
    assert ingest_input(Cursor(), 1)["cursor"] is None


def test_triggers_are_told_apart_for_the_log() -> None:
    status_change = {
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "detail": {"name": "ingest-4", "status": "FAILED", "executionArn": "arn:…"},
    }
    schedule = {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
    assert trigger_of(status_change) == "execution ingest-4 ended FAILED"
    assert trigger_of(schedule) == "schedule"
    assert trigger_of({}) == "direct invocation"
    assert trigger_of(None) == "direct invocation"


def test_summary_is_small_and_json_ready() -> None:
    assert summary(Start("ingest-1-2", 2, 1)) == {
        "action": "start",
        "shard": 1,
        "name": "ingest-1-2",
        "generation": 2,
    }
    assert summary(Nothing("switched_off", "x")) == {
        "action": "nothing",
        "reason": "switched_off",
        "detail": "x",
    }


@dataclass
class FakeControl:
    """An in-memory workflow with Step Functions' rule: one execution per name, ever.

    The listings lag like ListExecutions: ``hidden`` names are missing from both, and
    ``hidden_running`` ones are missing from the RUNNING listing only; DescribeExecution
    (``status``) is always right.
    """

    on: bool = True
    executions: dict[str, str] = field(default_factory=dict)
    """name → status, in start order."""
    saved: dict[int, Cursor] = field(default_factory=dict)
    inputs: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    """Names a stale listing does not show yet."""
    hidden_running: set[str] = field(default_factory=set)
    """Names the RUNNING listing does not show yet (the full listing does)."""
    checkpoint_reads: list[int] = field(default_factory=list)
    described: list[str] = field(default_factory=list)

    def switched_on(self) -> bool:
        return self.on

    def running(self) -> list[str]:
        hidden = self.hidden | self.hidden_running
        return [n for n, s in self.executions.items() if s == "RUNNING" and n not in hidden]

    def recent(self) -> list[str]:
        return [n for n in reversed(self.executions) if n not in self.hidden]

    def status(self, name: str) -> str | None:
        self.described.append(name)
        return self.executions.get(name)

    def checkpoint(self, shard: int) -> Cursor | None:
        self.checkpoint_reads.append(shard)
        return self.saved.get(shard)

    def start(self, name: str, payload: Mapping[str, Any]) -> bool:
        if name in self.executions:
            return False
        self.executions[name] = "RUNNING"
        self.inputs[name] = payload
        return True


ONE = (("BTCUSD",),)
THREE = (("BTCUSD",), ("ETHUSD",), ("XRPUSD",))


def test_supervise_starts_with_the_checkpointed_cursor() -> None:
    control = FakeControl(executions={"ingest-0-41": "FAILED"}, saved={0: cursor()})
    assert supervise(control, ONE) == [Start("ingest-0-42", 42, 0)]
    assert control.inputs["ingest-0-42"] == {
        "shard": 0,
        "cursor": cursor().to_json(),
        "generation": 42,
        "loop": 0,
    }


def test_supervise_keeps_one_execution_per_shard_each_with_its_checkpoint() -> None:
    control = FakeControl(
        executions={"ingest-0-3": "RUNNING", "ingest-1-8": "FAILED"}, saved={1: cursor()}
    )
    assert supervise(control, THREE) == [
        Nothing("already_running", "ingest-0-3 is running", 0),
        Start("ingest-1-9", 9, 1),
        Start("ingest-2-1", 1, 2),
    ]
    assert control.inputs["ingest-1-9"]["cursor"] == cursor().to_json()
    assert control.inputs["ingest-2-1"]["cursor"] is None
    assert control.checkpoint_reads == [1, 2]
    assert [d for d in supervise(control, THREE) if isinstance(d, Start)] == []


def test_an_empty_shard_gets_no_execution() -> None:
    control = FakeControl()
    assert supervise(control, (("BTCUSD",), ())) == [Start("ingest-0-1", 1, 0)]


def test_supervise_reads_nothing_more_when_switched_off_or_running() -> None:
    off = FakeControl(on=False)
    assert supervise(off, ONE) == [Nothing("switched_off", "ingestion is switched off")]
    running = FakeControl(executions={"ingest-0-3": "RUNNING"})
    assert supervise(running, ONE) == [Nothing("already_running", "ingest-0-3 is running", 0)]
    assert off.checkpoint_reads == running.checkpoint_reads == []
    assert off.inputs == running.inputs == {}


def test_the_newest_known_execution_is_confirmed_before_a_start() -> None:
    """The RUNNING listing lags behind the full one: ingest-0-2 (just started by the
    continue-as-new of ingest-0-1) is listed, but not as RUNNING. DescribeExecution says it
    runs, so no ingest-0-3 is started beside it."""
    control = FakeControl(executions={"ingest-0-1": "SUCCEEDED", "ingest-0-2": "RUNNING"})
    control.hidden_running = {"ingest-0-2"}
    assert supervise(control, ONE) == [
        Nothing("already_running", "ingest-0-2 is running (listed late)", 0)
    ]
    assert list(control.executions) == ["ingest-0-1", "ingest-0-2"]
    assert control.described == ["ingest-0-2"]


def test_a_name_taken_by_a_running_execution_is_success() -> None:
    """Two triggers raced: the other one's execution is not listed yet, but it runs."""
    control = FakeControl(executions={"ingest-0-1": "SUCCEEDED", "ingest-0-2": "RUNNING"})
    control.hidden = {"ingest-0-2"}
    assert supervise(control, ONE) == [
        Nothing("already_running", "ingest-0-2 was started concurrently", 0)
    ]
    assert list(control.executions) == ["ingest-0-1", "ingest-0-2"]


def test_a_name_taken_by_a_closed_execution_moves_on_to_the_next() -> None:
    """The listing was stale: the name is used up, the next one is free."""
    control = FakeControl(executions={"ingest-0-1": "SUCCEEDED", "ingest-0-2": "ABORTED"})
    control.hidden = {"ingest-0-2"}
    assert supervise(control, ONE) == [Start("ingest-0-3", 3, 0)]
    assert control.executions["ingest-0-3"] == "RUNNING"
    assert control.checkpoint_reads == [0]


def test_supervise_gives_up_when_every_name_is_taken() -> None:
    control = FakeControl(executions={f"ingest-0-{g}": "FAILED" for g in range(1, 6)})
    control.hidden = set(control.executions)
    with pytest.raises(RuntimeError, match="no free ingest execution name for shard 0"):
        supervise(control, ONE)


CLOSED = st.sampled_from(["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"])


@given(
    shards=st.lists(st.tuples(st.lists(CLOSED, max_size=3), st.booleans()), min_size=3, max_size=3),
    on=st.booleans(),
    triggers=st.integers(1, 4),
    stale=st.sets(st.integers(0, 11)),
    stale_running=st.sets(st.integers(0, 11)),
)
def test_any_number_of_triggers_leave_exactly_one_running_per_shard(
    shards: list[tuple[list[str], bool]],
    on: bool,
    triggers: int,
    stale: set[int],
    stale_running: set[int],
) -> None:
    """Each shard's history: closed generations, the newest maybe RUNNING (continue-as-new
    starts g+1 as g ends). Whatever the listings hide, triggers never add a second execution
    to a shard, and leave one in each when switched on (unless every name tried is taken)."""
    executions: dict[str, str] = {}
    for shard, (closed, running) in enumerate(shards):
        for g, status in enumerate([*closed, *(["RUNNING"] if running else [])], start=1):
            executions[f"ingest-{shard}-{g}"] = status
    names = list(executions)
    control = FakeControl(on=on, executions=executions)
    control.hidden = {n for i, n in enumerate(names) if i in stale}
    control.hidden_running = {n for i, n in enumerate(names) if i in stale_running}
    gave_up = False
    for _ in range(triggers):
        try:
            supervise(control, THREE)
        except RuntimeError:
            gave_up = True  # more closed names hidden than MAX_ATTEMPTS: the next trigger goes on
    for shard, (_, running) in enumerate(shards):
        mine = [
            n
            for n, s in control.executions.items()
            if s == "RUNNING" and generation_of(n, shard) is not None
        ]
        assert len(mine) <= 1, control.executions
        if on and not gave_up:
            assert len(mine) == 1, control.executions
        if not on:
            assert len(mine) == running


# --- an execution that ended badly: told once an hour per shard, and the back-off ---------------

MINUTE = 60 * 10**9
T = 1_795_839_750_000 * 10**6
"""2026-11-28 04:22:30 UTC, in ns."""
MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:tradelake-prod-ingest"


def ended(name: str, at: int, status: str = "FAILED") -> Ended:
    arn = MACHINE.replace(":stateMachine:", ":execution:") + f":{name}"
    return Ended(name, status, at, arn)


def test_the_status_change_names_the_execution_and_its_stop_time() -> None:
    event = {
        "source": "aws.states",
        "detail-type": "Step Functions Execution Status Change",
        "detail": {
            "name": "ingest-1-7",
            "status": "TIMED_OUT",
            "executionArn": "arn:x:ingest-1-7",
            "stopDate": T // 10**6,
        },
    }
    assert ended_of(event, now_ns=0) == Ended("ingest-1-7", "TIMED_OUT", T, "arn:x:ingest-1-7")
    del event["detail"]["stopDate"]  # type: ignore[attr-defined]
    assert ended_of(event, now_ns=5).stopped_ns == 5  # type: ignore[union-attr]
    assert ended_of({**event, "detail": {"status": "SUCCEEDED"}}, 0) is None
    assert ended_of({"detail-type": "Scheduled Event", "source": "aws.events"}, 0) is None
    assert ended_of(None, 0) is None


def test_the_first_failure_of_a_shard_in_an_hour_is_told_the_next_ones_not() -> None:
    first = ended("ingest-0-7", T)
    second = ended("ingest-0-8", T + 5 * MINUTE)
    history = [first, second]
    assert first_in_the_hour(first, history)
    assert not first_in_the_hour(second, history)
    assert first_in_the_hour(ended("ingest-1-3", T + MINUTE), history), "another shard"
    later = ended("ingest-0-9", T + 5 * MINUTE + QUIET_NS)
    assert first_in_the_hour(later, [*history, later]), "an hour after the last failure"
    assert not first_in_the_hour(later, [*history, ended("ingest-0-10", T + QUIET_NS), later])


def test_failures_told_out_of_order_still_make_one_message() -> None:
    """The second failure's event handled first, with the first listed: the first is told."""
    first, second = ended("ingest-0-7", T), ended("ingest-0-8", T + 10**6)
    assert [first_in_the_hour(e, [second, first]) for e in (second, first)] == [False, True]
    same_ms = [ended("ingest-0-8", T), ended("ingest-0-9", T)]
    assert [first_in_the_hour(e, same_ms) for e in same_ms] == [True, False]


def test_a_hand_started_execution_is_always_told() -> None:
    manual = ended("manual-retry", T)
    assert first_in_the_hour(manual, [ended("manual-retry-0", T - MINUTE), manual])


def test_three_failures_of_a_shard_in_15_minutes_back_it_off() -> None:
    failures = [ended(f"ingest-0-{g}", T + g * MINUTE) for g in (1, 2, 3)]
    now = T + 3 * MINUTE
    assert backing_off(failures, now) == {0}
    assert backing_off(failures[1:], now) == frozenset()
    assert backing_off([*failures[1:], failures[2]], now) == frozenset(), "counted by name"
    assert backing_off(failures, T + MINUTE + BACKOFF_WINDOW_NS + 1) == frozenset()
    other = [ended(f"ingest-1-{g}", T + g * MINUTE) for g in (4, 5)]
    assert backing_off([*failures, *other], now) == {0}


def test_a_backed_off_shard_is_not_started_and_the_others_are() -> None:
    control = FakeControl(executions={"ingest-0-3": "FAILED", "ingest-1-3": "FAILED"})
    decisions = supervise(control, THREE, hold={0})
    assert decisions[0] == Nothing(
        "backing_off",
        "3 or more executions ended badly in the last 15 minutes, so only the 5-minute heartbeat"
        " restarts it",
        0,
    )
    assert decisions[1:] == [Start("ingest-1-4", 4, 1), Start("ingest-2-1", 1, 2)]
    assert "ingest-0-4" not in control.executions
    control.executions["ingest-0-5"] = "RUNNING"
    assert supervise(control, THREE, hold={0})[0].reason == "already_running"  # type: ignore[union-attr]


def test_the_message_says_what_was_done_and_where_to_look() -> None:
    failed = ended("ingest-0-7", T, "ABORTED")
    done = outcome([Nothing("already_running", "x", 1), Start("ingest-0-8", 8, 0)], failed)
    assert done.startswith("The supervisor restarted shard 0 from its checkpoint as ingest-0-8")
    subject, message = alert("prod", failed, done)
    assert subject == "tradelake prod: ingest-0-7 ended ABORTED"
    for needed in (
        "tradelake prod: the ingest execution ingest-0-7 (shard 0) ended ABORTED at"
        " 2026-11-28 04:22:30 UTC. The supervisor restarted shard 0",
        "Further failures of this shard within the hour are not sent",
        "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1"
        f"#/v2/executions/details/{failed.arn}",
        f"describe-execution --execution-arn {failed.arn}",
        "tradelake status --stage prod",
        "tradelake-prod-ingest function",
    ):
        assert needed in message, needed
    assert "\n" not in message
    off = outcome([Nothing("switched_off", "ingestion is switched off")], failed)
    assert off == "The supervisor did not restart it: ingestion is switched off."
    assert outcome([Start("ingest-1-2", 2, 1)], ended("manual", T)).startswith("It is not")
