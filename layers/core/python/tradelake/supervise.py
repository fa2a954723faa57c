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

Woken by an execution that ended badly, the supervisor also tells the alarm topic, and backs
off, from the executions ListExecutions lists as ended badly (``Ended``) plus the one the event
names (the listing may not show it yet):

- it sends one message (``alert``) unless another execution of the same shard ended badly in
  the hour before this one: a shard failing again and again sends one message, not one per
  restart. "Before this one", not "in the last hour": two failures processed out of order
  still send exactly one;
- a shard with ``BACKOFF_FAILURES`` executions ended badly in the last ``BACKOFF_WINDOW_NS`` is
  not restarted on the event but left to the 5-minute heartbeat (``hold``), so a crash loop
  (a bad deploy, Phemex refusing every symbol) costs about twelve executions an hour.

This module is pure: Step Functions, the switch and the checkpoints are behind ``IngestControl``;
the listing of ended executions and the topic are the handler's adapters.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol

from tradelake.cursor import Cursor

EXECUTION_PREFIX = "ingest"
_NAME = re.compile(rf"{EXECUTION_PREFIX}-(?:([0-9]{{1,4}})-)?([0-9]{{1,18}})")
RUNNING = "RUNNING"
MAX_ATTEMPTS = 3
"""Names tried before giving up when each turns out taken by a closed execution."""
ENDED_BADLY = ("FAILED", "TIMED_OUT", "ABORTED")
"""The statuses of an execution that ended without handing over (serverless.yml's supervisor
event matches the same three)."""
_NS_PER_MINUTE = 60_000_000_000
QUIET_NS = 60 * _NS_PER_MINUTE
"""A shard's failure is told unless another failure of the shard came less than this before it."""
BACKOFF_FAILURES = 3
BACKOFF_WINDOW_NS = 15 * _NS_PER_MINUTE
"""A shard with BACKOFF_FAILURES failures in this window is restarted by the heartbeat only."""


class Start(NamedTuple):
    """Start the next ingest execution of a shard."""

    name: str
    generation: int
    shard: int = 0


class Nothing(NamedTuple):
    """Leave things as they are."""

    reason: Literal["switched_off", "already_running", "backing_off"]
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


def supervise(
    control: IngestControl, shards: Sequence[Sequence[str]], hold: Collection[int] = ()
) -> list[Decision]:
    """Decide and act once for every non-empty shard (see the module docstring).

    ``shards`` are the symbols of each shard (``tradelake.shards.shards``); one decision per
    non-empty shard, or a single ``Nothing`` when switched off. The shards in ``hold``
    (``backing_off``) are not started. A ``Start`` returned has been started; raises if no free
    name is found for a shard in a few tries.
    """
    if not control.switched_on():
        return [decide(False, [], [])]
    running, recent = control.running(), control.recent()
    return [
        _supervise_shard(control, shard, running, recent, shard in hold)
        for shard, symbols in enumerate(shards)
        if symbols
    ]


def _supervise_shard(
    control: IngestControl,
    shard: int,
    running: Sequence[str],
    recent: Sequence[str],
    held: bool,
) -> Decision:
    taken: list[str] = []
    cursor: Cursor | None = None
    cursor_read = False
    for _ in range(MAX_ATTEMPTS):
        decision = decide(True, running, [*recent, *taken], shard)
        if isinstance(decision, Nothing):
            return decision
        if held:
            return Nothing(
                "backing_off",
                f"{BACKOFF_FAILURES} or more executions ended badly in the last"
                f" {BACKOFF_WINDOW_NS // _NS_PER_MINUTE} minutes, so only the 5-minute heartbeat"
                " restarts it",
                shard,
            )
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


# --- an execution that ended badly: the message and the back-off -------------------------------


class Ended(NamedTuple):
    """An ingest execution that ended FAILED, TIMED_OUT or ABORTED."""

    name: str
    status: str
    stopped_ns: int
    arn: str


def ended_of(event: Any, now_ns: int) -> Ended | None:
    """The execution a Step Functions status change says ended badly; None for any other event.

    Its stop time is the event's ``stopDate`` (ms), ``now_ns`` if it has none.
    """
    if not isinstance(event, Mapping) or event.get("source") != "aws.states":
        return None
    detail = event.get("detail")
    if not isinstance(detail, Mapping) or detail.get("status") not in ENDED_BADLY:
        return None
    stop_ms = detail.get("stopDate")
    return Ended(
        name=str(detail["name"]),
        status=str(detail["status"]),
        stopped_ns=int(stop_ms) * 1_000_000 if isinstance(stop_ms, int) else now_ns,
        arn=str(detail["executionArn"]),
    )


def _shard_of(name: str) -> int | None:
    parsed = parse_name(name)
    return None if parsed is None else parsed[0]


def first_in_the_hour(ended: Ended, failures: Iterable[Ended]) -> bool:
    """Whether ``ended`` is to be told: no other execution of its shard ended badly in the
    ``QUIET_NS`` before it. A hand-started execution (no shard) is always told."""
    shard = _shard_of(ended.name)
    if shard is None:
        return True
    key = (ended.stopped_ns, ended.name)
    return not any(
        _shard_of(f.name) == shard
        and f.name != ended.name
        and ended.stopped_ns - f.stopped_ns < QUIET_NS
        and (f.stopped_ns, f.name) < key
        for f in failures
    )


def backing_off(failures: Iterable[Ended], now_ns: int) -> frozenset[int]:
    """The shards with ``BACKOFF_FAILURES`` or more executions (by name) that ended badly in the
    last ``BACKOFF_WINDOW_NS``: restarting them again at once would only fail again."""
    recent = {f.name for f in failures if now_ns - f.stopped_ns <= BACKOFF_WINDOW_NS}
    per_shard = Counter(shard for name in recent if (shard := _shard_of(name)) is not None)
    return frozenset(shard for shard, n in per_shard.items() if n >= BACKOFF_FAILURES)


def outcome(decisions: Sequence[Decision], ended: Ended) -> str:
    """What the supervisor did about the shard of ``ended``, in a sentence for its message."""
    shard = _shard_of(ended.name)
    for decision in decisions:
        if isinstance(decision, Start) and decision.shard == shard:
            return (
                f"The supervisor restarted shard {shard} from its checkpoint as {decision.name}"
                " (trades Phemex no longer replays become a declared gap)."
            )
        if isinstance(decision, Nothing) and decision.shard in (shard, None):
            return f"The supervisor did not restart it: {decision.detail}."
    return (
        "It is not an execution the supervisor keeps running (started by hand, or of a shard"
        " the symbols no longer make): nothing was restarted."
    )


class Alert(NamedTuple):
    """A message for the alarm topic: an e-mail's subject and its plain-text body."""

    subject: str
    message: str


def alert(stage: str, ended: Ended, what_was_done: str) -> Alert:
    """The one readable paragraph sent for ``ended`` (``first_in_the_hour``)."""
    region = ended.arn.split(":")[3] if ended.arn.count(":") >= 3 else ""
    console = (
        f"https://{region}.console.aws.amazon.com/states/home?region={region}"
        f"#/v2/executions/details/{ended.arn}"
    )
    stopped = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ended.stopped_ns // 10**9))
    shard = _shard_of(ended.name)
    which = "" if shard is None else f" (shard {shard})"
    message = (
        f"tradelake {stage}: the ingest execution {ended.name}{which} ended {ended.status}"
        f" at {stopped}. {what_was_done} Further failures of this shard within the hour are"
        " not sent (nor any while it keeps failing at least once an hour): check with"
        f" `tradelake status --stage {stage}` that every shard runs. Find the error in the"
        f" execution ({console}, or aws stepfunctions describe-execution --execution-arn"
        f" {ended.arn}) and in the log of the tradelake-{stage}-ingest function, and see"
        " docs/OPERATIONS.md, ingest-execution-ended."
    )
    subject = f"tradelake {stage}: {ended.name} ended {ended.status}"
    return Alert(subject[:100], message)
