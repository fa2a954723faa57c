"""Keep exactly one ingest execution per shard running while ingestion is on (ARCHITECTURE §8).

The symbols are split into shards (``tradelake.shards``); each shard is captured by its own
execution named ``ingest-<shard>-<generation>``, with input
``{"shard": s, "cursor": <the shard's checkpoint or null>, "generation": g, "loop": 0}``.

The supervisor runs every five minutes and whenever an ingest execution ends badly (FAILED,
TIMED_OUT, ABORTED). Whatever woke it, it looks at the world and decides the same way, shard by
shard:

- the operator's switch says ``off`` → nothing (a running execution stops itself cleanly);
- an execution of the shard is RUNNING → nothing;
- otherwise it asks DescribeExecution about the newest execution of the shard it knows of (the
  highest generation listed): ListExecutions is eventually consistent, and the RUNNING listing
  may not show yet what the full listing (or a continue-as-new a moment ago) does. RUNNING →
  nothing;
- otherwise start ``ingest-<s>-<g>``, ``g`` one more than the shard's highest generation among
  the recent executions (1 if there is none).

Execution names carry the generation because the workflow's continue-as-new starts
``ingest-<s>-<g+1>`` itself: names stay in one sequence whoever starts them. A name of the form
``ingest-<g>`` (before shards) counts as shard 0; any other name (a hand-started execution)
belongs to no shard and is ignored — the ingest function's reserved concurrency, one per shard,
throttles a capture beyond one per shard.

Two triggers at the same moment compute the same name, and Step Functions allows one execution
per name: the second StartExecution is answered with the first execution (same name and input)
or ``ExecutionAlreadyExists``. After the latter the supervisor asks how that execution is doing:
RUNNING means someone else started it, which is success; closed means our listing was stale, so
it decides again with that name counted as taken. Either way one execution runs.

A malformed checkpoint is an error, not an empty cursor: starting without the cursor would skip
the gap check against it, and the lake would claim completeness it does not have.

This module is pure: Step Functions, the switch and the checkpoints are behind ``IngestControl``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol

from tradelake.cursor import Cursor

EXECUTION_PREFIX = "ingest"
_NAME = re.compile(rf"{EXECUTION_PREFIX}-(?:([0-9]{{1,4}})-)?([0-9]{{1,18}})")
RUNNING = "RUNNING"
MAX_ATTEMPTS = 3
"""Names tried before giving up when each turns out taken by a closed execution."""


class Start(NamedTuple):
    """Start the next ingest execution of a shard."""

    name: str
    generation: int
    shard: int = 0


class Nothing(NamedTuple):
    """Leave things as they are."""

    reason: Literal["switched_off", "already_running"]
    detail: str
    shard: int | None = None
    """None: every shard (switched off)."""


Decision = Start | Nothing


def execution_name(generation: int, shard: int = 0) -> str:
    return f"{EXECUTION_PREFIX}-{shard}-{generation}"


def parse_name(name: str) -> tuple[int, int] | None:
    """``ingest-<s>-<g>`` → (s, g); ``ingest-<g>`` (before shards) → (0, g); else None."""
    match = _NAME.fullmatch(name)
    if not match:
        return None
    shard, generation = match.groups()
    return int(shard or 0), int(generation)


def generation_of(name: str, shard: int = 0) -> int | None:
    """The generation in an execution name of ``shard``, or None for any other name."""
    parsed = parse_name(name)
    return parsed[1] if parsed is not None and parsed[0] == shard else None


def next_generation(names: Iterable[str], shard: int = 0) -> int:
    """One more than the shard's highest generation among ``names``; 1 if it has none."""
    return max((g for n in names if (g := generation_of(n, shard)) is not None), default=0) + 1


def newest_known(names: Iterable[str], shard: int = 0) -> str | None:
    """The name with the shard's highest generation among ``names``, None if it has none."""
    known = [(g, n) for n in names if (g := generation_of(n, shard)) is not None]
    return max(known)[1] if known else None


def decide(
    switched_on: bool, running: Sequence[str], recent: Iterable[str], shard: int = 0
) -> Decision:
    """What to do for ``shard``, given the switch, the RUNNING executions and recent names."""
    if not switched_on:
        return Nothing("switched_off", "ingestion is switched off")
    mine = [n for n in running if generation_of(n, shard) is not None]
    if mine:
        return Nothing("already_running", f"{', '.join(mine)} is running", shard)
    generation = next_generation(recent, shard)
    return Start(execution_name(generation, shard), generation, shard)


def parse_switch(value: str) -> bool:
    """``on`` → True, ``off`` → False (any case and surrounding space); anything else raises.

    Guessing would be wrong either way: off loses data silently, on overrides the operator.
    """
    word = value.strip().lower()
    if word not in ("on", "off"):
        raise ValueError(f"the ingest switch must be 'on' or 'off', not {value!r}")
    return word == "on"


def ingest_input(cursor: Cursor | None, generation: int, shard: int = 0) -> dict[str, Any]:
    """The input of a fresh ingest execution; an empty cursor is sent as null."""
    return {
        "shard": shard,
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
    """The port to the ingest workflow, its on/off switch and its cursor checkpoints."""

    def switched_on(self) -> bool: ...

    def running(self) -> list[str]:
        """Names of the RUNNING executions (ListExecutions: may lag behind)."""
        ...

    def recent(self) -> list[str]:
        """Names of the most recent executions, any status, newest first (may lag behind)."""
        ...

    def status(self, name: str) -> str | None:
        """The status of the execution ``name`` (DescribeExecution), None if there is none."""
        ...

    def checkpoint(self, shard: int) -> Cursor | None:
        """The shard's checkpointed cursor; None if there is none. Raises if it is malformed."""
        ...

    def start(self, name: str, payload: Mapping[str, Any]) -> bool:
        """Start an execution; False when the name is taken (``ExecutionAlreadyExists``)."""
        ...


def summary(decision: Decision) -> dict[str, Any]:
    """A small JSON-ready description of a decision, for the log and the invocation result."""
    if isinstance(decision, Start):
        return {
            "action": "start",
            "shard": decision.shard,
            "name": decision.name,
            "generation": decision.generation,
        }
    return {
        "action": "nothing",
        "reason": decision.reason,
        "detail": decision.detail,
        **({} if decision.shard is None else {"shard": decision.shard}),
    }


def supervise(control: IngestControl, shards: Sequence[Sequence[str]]) -> list[Decision]:
    """Decide and act once for every non-empty shard (see the module docstring).

    ``shards`` are the symbols of each shard (``tradelake.shards.shards``); one decision per
    non-empty shard, or a single ``Nothing`` when switched off. A ``Start`` returned has been
    started; raises if no free name is found for a shard in a few tries.
    """
    if not control.switched_on():
        return [decide(False, [], [])]
    running, recent = control.running(), control.recent()
    return [
        _supervise_shard(control, shard, running, recent)
        for shard, symbols in enumerate(shards)
        if symbols
    ]


def _supervise_shard(
    control: IngestControl, shard: int, running: Sequence[str], recent: Sequence[str]
) -> Decision:
    taken: list[str] = []
    cursor: Cursor | None = None
    cursor_read = False
    for _ in range(MAX_ATTEMPTS):
        decision = decide(True, running, [*recent, *taken], shard)
        if isinstance(decision, Nothing):
            return decision
        newest = None if taken else newest_known([*running, *recent], shard)
        if newest is not None and control.status(newest) == RUNNING:
            return Nothing("already_running", f"{newest} is running (listed late)", shard)
        if not cursor_read:
            cursor, cursor_read = control.checkpoint(shard), True
        if control.start(decision.name, ingest_input(cursor, decision.generation, shard)):
            return decision
        if control.status(decision.name) == RUNNING:
            return Nothing("already_running", f"{decision.name} was started concurrently", shard)
        taken.append(decision.name)
    raise RuntimeError(
        f"no free ingest execution name for shard {shard} after {MAX_ATTEMPTS} tries"
        f" (taken: {', '.join(taken)})"
    )
