"""Keep exactly one ingest execution running while ingestion is switched on (ARCHITECTURE.md §1).

The supervisor runs every five minutes and whenever an ingest execution ends badly (FAILED,
TIMED_OUT, ABORTED). Whatever woke it, it looks at the world and decides the same way:

- the operator's switch says ``off`` → nothing (a running execution stops itself cleanly);
- an execution is RUNNING → nothing;
- otherwise start ``ingest-<g>``, ``g`` one more than the highest generation among the recent
  executions (1 if none has an ``ingest-<n>`` name), with input
  ``{"cursor": <checkpointed cursor or null>, "generation": g, "loop": 0}``.

Execution names carry the generation because the workflow's continue-as-new starts
``ingest-<g+1>`` itself: names stay in one sequence whoever starts them. Taking the highest
parsable generation, rather than the newest execution's, keeps a hand-started execution with
another name from sending the sequence back to a name already used.

Two triggers at the same moment compute the same name, and Step Functions allows one execution
per name: the second StartExecution is answered with the first execution (same name and input)
or ``ExecutionAlreadyExists``. After the latter the supervisor asks how that execution is doing:
RUNNING means someone else started it, which is success; closed means our listing was stale, so
it decides again with that name counted as taken. Either way one execution runs.

A malformed checkpoint is an error, not an empty cursor: starting without the cursor would skip
the gap check against it, and the lake would claim completeness it does not have.

This module is pure: Step Functions, the switch and the checkpoint are behind ``IngestControl``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol

from tradelake.cursor import Cursor

EXECUTION_PREFIX = "ingest"
_GENERATION = re.compile(rf"{EXECUTION_PREFIX}-([0-9]{{1,18}})")
RUNNING = "RUNNING"
MAX_ATTEMPTS = 3
"""Names tried before giving up when each turns out taken by a closed execution."""


class Start(NamedTuple):
    """Start the next ingest execution."""

    name: str
    generation: int


class Nothing(NamedTuple):
    """Leave things as they are."""

    reason: Literal["switched_off", "already_running"]
    detail: str


Decision = Start | Nothing


def execution_name(generation: int) -> str:
    return f"{EXECUTION_PREFIX}-{generation}"


def generation_of(name: str) -> int | None:
    """The generation in an ``ingest-<n>`` execution name, or None for any other name."""
    match = _GENERATION.fullmatch(name)
    return int(match.group(1)) if match else None


def next_generation(names: Iterable[str]) -> int:
    """One more than the highest generation among ``names``; 1 if none is ``ingest-<n>``."""
    return max((g for g in map(generation_of, names) if g is not None), default=0) + 1


def decide(switched_on: bool, running: Sequence[str], recent: Iterable[str]) -> Decision:
    """What to do, given the switch, the RUNNING executions and recent execution names."""
    if not switched_on:
        return Nothing("switched_off", "ingestion is switched off")
    if running:
        return Nothing("already_running", f"{', '.join(running)} is running")
    generation = next_generation([*running, *recent])
    return Start(execution_name(generation), generation)


def parse_switch(value: str) -> bool:
    """``on`` → True, ``off`` → False (any case and surrounding space); anything else raises.

    Guessing would be wrong either way: off loses data silently, on overrides the operator.
    """
    word = value.strip().lower()
    if word not in ("on", "off"):
        raise ValueError(f"the ingest switch must be 'on' or 'off', not {value!r}")
    return word == "on"


def ingest_input(cursor: Cursor | None, generation: int) -> dict[str, Any]:
    """The input of a fresh ingest execution; an empty cursor is sent as null."""
    return {
        "cursor": cursor.to_json() if cursor is not None and cursor.symbols else None,
        "generation": generation,
        "loop": 0,
    }


def trigger_of(event: Any) -> str:
    """What woke the supervisor, for the log: the schedule, an execution ending, or a person."""
    if not isinstance(event, Mapping):
        return "direct invocation"
    kind = event.get("detail-type")
    detail = event.get("detail")
    if kind == "Step Functions Execution Status Change" and isinstance(detail, Mapping):
        return f"execution {detail.get('name', '?')} ended {detail.get('status', '?')}"
    if kind == "Scheduled Event":
        return "schedule"
    return "direct invocation"


class IngestControl(Protocol):
    """The port to the ingest workflow, its on/off switch and its cursor checkpoint."""

    def switched_on(self) -> bool: ...

    def running(self) -> list[str]:
        """Names of the RUNNING executions."""
        ...

    def recent(self) -> list[str]:
        """Names of the most recent executions, any status, newest first."""
        ...

    def status(self, name: str) -> str | None:
        """The status of the execution called ``name``, None if there is none."""
        ...

    def checkpoint(self) -> Cursor | None:
        """The checkpointed cursor; None if there is none. Raises if it is malformed."""
        ...

    def start(self, name: str, payload: Mapping[str, Any]) -> bool:
        """Start an execution; False when the name is taken (``ExecutionAlreadyExists``)."""
        ...


def summary(decision: Decision) -> dict[str, Any]:
    """A small JSON-ready description of a decision, for the log and the invocation result."""
    if isinstance(decision, Start):
        return {"action": "start", "name": decision.name, "generation": decision.generation}
    return {"action": "nothing", "reason": decision.reason, "detail": decision.detail}


def supervise(control: IngestControl) -> Decision:
    """Decide and act once (see the module docstring).

    A ``Start`` returned has been started; raises if no free name is found in a few tries.
    """
    if not control.switched_on():
        return decide(False, [], [])
    taken: list[str] = []
    cursor: Cursor | None = None
    cursor_read = False
    for _ in range(MAX_ATTEMPTS):
        decision = decide(True, control.running(), [*control.recent(), *taken])
        if isinstance(decision, Nothing):
            return decision
        if not cursor_read:
            cursor, cursor_read = control.checkpoint(), True
        if control.start(decision.name, ingest_input(cursor, decision.generation)):
            return decision
        if control.status(decision.name) == RUNNING:
            return Nothing("already_running", f"{decision.name} was started concurrently")
        taken.append(decision.name)
    raise RuntimeError(
        f"no free ingest execution name after {MAX_ATTEMPTS} tries (taken: {', '.join(taken)})"
    )
