"""The supervisor's decision: exactly one ingest execution while switched on, names in sequence."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradelake.cursor import Cursor, SymbolCursor
from tradelake.supervise import (
    Nothing,
    Start,
    decide,
    generation_of,
    ingest_input,
    next_generation,
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
    assert decide(True, ["ingest-7"], ["ingest-7", "ingest-6"]) == Nothing(
        "already_running", "ingest-7 is running"
    )


def test_none_ever_starts_generation_one() -> None:
    assert decide(True, [], []) == Start("ingest-1", 1)


def test_after_a_finished_generation_the_next_one_starts() -> None:
    assert decide(True, [], ["ingest-41", "ingest-40"]) == Start("ingest-42", 42)


def test_a_hand_started_execution_does_not_reset_the_sequence() -> None:
    assert decide(True, [], ["manual-retry", "ingest-41", "x"]) == Start("ingest-42", 42)


def test_only_unparsable_names_start_at_one() -> None:
    assert decide(True, [], ["manual-retry", "ingest-", "ingest-x1", "Ingest-5"]) == Start(
        "ingest-1", 1
    )


@pytest.mark.parametrize(
    ("name", "generation"),
    [
        ("ingest-1", 1),
        ("ingest-42", 42),
        ("ingest-007", 7),
        ("ingest-", None),
        ("ingest-4-retry", None),
        ("xingest-4", None),
        ("ingest-4\n", None),
        ("ingest-" + "9" * 19, None),
    ],
)
def test_generation_of(name: str, generation: int | None) -> None:
    assert generation_of(name) == generation


@given(st.lists(st.integers(1, 10**12), max_size=20), st.lists(st.text(max_size=12), max_size=5))
def test_the_next_generation_is_above_every_known_one(gens: list[int], others: list[str]) -> None:
    names = [f"ingest-{g}" for g in gens] + others
    n = next_generation(names)
    assert all(n > g for g in gens)
    assert n == max(gens, default=0) + 1 or any(generation_of(o) is not None for o in others)


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


def test_the_input_carries_the_cursor_generation_and_loop_zero() -> None:
    assert ingest_input(cursor(), 42) == {"cursor": cursor().to_json(), "generation": 42, "loop": 0}


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
    assert summary(Start("ingest-2", 2)) == {"action": "start", "name": "ingest-2", "generation": 2}
    assert summary(Nothing("switched_off", "x")) == {
        "action": "nothing",
        "reason": "switched_off",
        "detail": "x",
    }


@dataclass
class FakeControl:
    """An in-memory workflow with Step Functions' rule: one execution per name, ever."""

    on: bool = True
    executions: dict[str, str] = field(default_factory=dict)
    """name → status, in start order."""
    saved: Cursor | None = None
    inputs: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    """Names a stale listing does not show yet."""
    checkpoint_reads: int = 0

    def switched_on(self) -> bool:
        return self.on

    def running(self) -> list[str]:
        return [n for n, s in self.executions.items() if s == "RUNNING" and n not in self.hidden]

    def recent(self) -> list[str]:
        return [n for n in reversed(self.executions) if n not in self.hidden]

    def status(self, name: str) -> str | None:
        return self.executions.get(name)

    def checkpoint(self) -> Cursor | None:
        self.checkpoint_reads += 1
        return self.saved

    def start(self, name: str, payload: Mapping[str, Any]) -> bool:
        if name in self.executions:
            return False
        self.executions[name] = "RUNNING"
        self.inputs[name] = payload
        return True


def test_supervise_starts_with_the_checkpointed_cursor() -> None:
    control = FakeControl(executions={"ingest-41": "FAILED"}, saved=cursor())
    assert supervise(control) == Start("ingest-42", 42)
    assert control.inputs["ingest-42"] == {
        "cursor": cursor().to_json(),
        "generation": 42,
        "loop": 0,
    }


def test_supervise_reads_nothing_more_when_switched_off_or_running() -> None:
    off = FakeControl(on=False)
    assert supervise(off) == Nothing("switched_off", "ingestion is switched off")
    running = FakeControl(executions={"ingest-3": "RUNNING"})
    assert supervise(running) == Nothing("already_running", "ingest-3 is running")
    assert off.checkpoint_reads == running.checkpoint_reads == 0
    assert off.inputs == running.inputs == {}


def test_a_name_taken_by_a_running_execution_is_success() -> None:
    """Two triggers raced: the other one's execution is not listed yet, but it runs."""
    control = FakeControl(executions={"ingest-1": "SUCCEEDED", "ingest-2": "RUNNING"})
    control.hidden = {"ingest-2"}
    assert supervise(control) == Nothing("already_running", "ingest-2 was started concurrently")
    assert list(control.executions) == ["ingest-1", "ingest-2"]


def test_a_name_taken_by_a_closed_execution_moves_on_to_the_next() -> None:
    """The listing was stale: the name is used up, the next one is free."""
    control = FakeControl(executions={"ingest-1": "SUCCEEDED", "ingest-2": "ABORTED"})
    control.hidden = {"ingest-2"}
    assert supervise(control) == Start("ingest-3", 3)
    assert control.executions["ingest-3"] == "RUNNING"
    assert control.checkpoint_reads == 1


def test_supervise_gives_up_when_every_name_is_taken() -> None:
    control = FakeControl(executions={f"ingest-{g}": "FAILED" for g in range(1, 6)})
    control.hidden = set(control.executions)
    with pytest.raises(RuntimeError, match="no free ingest execution name"):
        supervise(control)


@given(
    statuses=st.lists(st.sampled_from(["RUNNING", "SUCCEEDED", "FAILED", "ABORTED"]), max_size=6),
    on=st.booleans(),
    triggers=st.integers(1, 4),
)
def test_any_number_of_triggers_leave_at_most_one_running(
    statuses: list[str], on: bool, triggers: int
) -> None:
    """Starting from at most one RUNNING execution, triggers never add a second one."""
    if statuses.count("RUNNING") > 1:
        statuses = [s if s != "RUNNING" else "FAILED" for s in statuses]
    control = FakeControl(on=on, executions={f"ingest-{i + 1}": s for i, s in enumerate(statuses)})
    for _ in range(triggers):
        supervise(control)
    assert len(control.running()) == (1 if on else statuses.count("RUNNING"))
