"""Tools for the person on call: ``tradelake switch on|off`` and ``tradelake status --lake``.

``switch`` sets the ingestion switch of a deployed stage, the SSM parameter
``/tradelake/<stage>/ingest`` (``custom.ingestSwitchParameter`` in serverless.yml) that the ingest
handler reads every loop and the supervisor every run (``supervise.parse_switch``). It never
creates the parameter: the stack does, and a parameter made by hand would make the next deploy
fail, so a stage without one gets one line saying so.

``status --lake DIR`` reads a local lake (``duckdb_lake.connect``, the cursor and the gap ledger
of ``lake_files``) and says, per symbol, how far behind it is; exit 0 when healthy, 1 when not,
each reason on its own line. Healthy means: at least one symbol, every symbol has a trade newer
than ``--stale-after`` minutes, and no gap was declared in the last hour.

``status --stage S`` does the same for a deployed stack: ``adapters.aws_stage`` gathers the facts
(switch, running executions, cursor checkpoints, files, partitions in S3 and Glue, gaps, alarms),
``stage_problems`` judges them (pure), and the command prints both. Healthy means: the switch is
on, each shard has exactly one execution running, every symbol's cursor is newer than
``--stale-after`` and its newest file newer than that plus Firehose's buffer, every partition in
S3 is in Glue (a partition whose first file is younger than ``PARTITION_GRACE_NS`` is still
being registered), no gap declared in the last hour and no ``tradelake-<stage>-`` alarm in ALARM.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from tradelake.model import Gap

NS_PER_S = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_S
NS_PER_HOUR = 60 * NS_PER_MINUTE
NS_PER_DAY = 24 * NS_PER_HOUR
DEFAULT_STALE_AFTER_MIN = 15.0
FIREHOSE_BUFFER_NS = 300 * NS_PER_S
"""Firehose's buffer interval (resources/firehose.yml): a file may lag the cursor this much."""
PARTITION_GRACE_NS = 2 * NS_PER_MINUTE
"""A partition missing from Glue whose first file is younger is being registered, not lost."""


def switch_parameter(stage: str) -> str:
    """The SSM parameter of stage ``stage``'s switch, as serverless.yml names it."""
    return f"/tradelake/{stage}/ingest"


def stale_arg(text: str) -> float:
    from tradelake.cli import positive_arg

    return positive_arg(text, " of minutes")


def add_parsers(commands: Any) -> None:
    """``tradelake switch`` and ``tradelake status``, added to the CLI's subcommands."""
    from tradelake.backfill import stage_arg

    switch = commands.add_parser(
        "switch",
        help="turn ingestion of a deployed stage on or off (its SSM switch)",
        description="Set the stage's ingestion switch (SSM /tradelake/<stage>/ingest). Off: "
        "each running ingest execution ends cleanly at its next loop and the supervisor starts "
        "none. On: the supervisor starts one per shard at its next run (every 5 minutes). Needs "
        "AWS credentials for the stage's account.",
    )
    switch.add_argument("state", choices=("on", "off"), help="on or off")
    switch.add_argument("--stage", type=stage_arg, required=True, help="e.g. prod")
    switch.add_argument("--region", help="default: the AWS configuration's region")

    status = commands.add_parser(
        "status",
        help="is the local lake or a deployed stage healthy? lag, files, gaps, executions, alarms",
        description="--lake: per symbol, newest trade and its lag, newest file, trades in the last "
        "hour and 24 h, gaps declared in the last 24 h, the cursor; unhealthy when there is no "
        "symbol, a symbol has no trade newer than --stale-after, or a gap was declared in the "
        "last hour. --stage (AWS credentials for the stage's account): the switch, the running "
        "execution of each shard and since when, lag and newest file per symbol, partitions in "
        "S3 versus Glue (today and yesterday), gaps in the last 24 h and the stage's alarms in "
        "ALARM; unhealthy when the switch is off, a shard has no execution (or several), a "
        "symbol is stale, a partition is missing from Glue, a gap was declared in the last hour "
        "or an alarm is in ALARM. Exit 0 when healthy, 1 when not, each reason on its own line.",
    )
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--lake", type=Path, help="the local lake directory")
    where.add_argument("--stage", type=stage_arg, help="a deployed stage, e.g. prod")
    status.add_argument("--region", help="with --stage; default: the AWS configuration's region")
    status.add_argument(
        "--stale-after",
        type=stale_arg,
        default=DEFAULT_STALE_AFTER_MIN,
        metavar="MINUTES",
        help=f"a symbol with no newer trade is stale (default {DEFAULT_STALE_AFTER_MIN:g})",
    )
    status.set_defaults(usage_error=status.error)


# --- switch ------------------------------------------------------------------------------------


def switch_command(args: argparse.Namespace, session: Any = None) -> int:
    """Run it; ``session`` (a boto3 Session) is for tests."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from tradelake.supervise import parse_switch

    session = session or boto3.session.Session(region_name=args.region)
    if not session.region_name:
        return _fail("switch", "no AWS region: pass --region or set AWS_REGION")
    name = switch_parameter(args.stage)
    ssm = session.client("ssm")
    try:
        try:
            before = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            return _fail(
                "switch",
                f"no parameter {name} in {session.region_name}: is stage {args.stage!r} "
                "deployed in this account and region?",
            )
        ssm.put_parameter(Name=name, Value=args.state, Type="String", Overwrite=True)
    except (BotoCoreError, ClientError) as exc:
        return _fail("switch", str(exc))
    try:
        was = "on" if parse_switch(before) else "off"
    except ValueError:
        was = repr(before)
    what = (
        "the supervisor starts one ingest execution per shard at its next run (within 5 minutes)"
        if args.state == "on"
        else "running ingest executions end cleanly at their next loop; the supervisor starts none"
    )
    change = f"was {was}" if was != args.state else "unchanged"
    print(f"{name} ({session.region_name}) set to {args.state} ({change}): {what}")
    return 0


# --- status --lake -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolStatus:
    symbol: str
    newest_ns: int | None
    newest_file: Path | None
    trades_1h: int
    trades_24h: int
    gaps_24h: int
    gap_span_24h_ns: int
    gaps_1h: int
    cursor_ns: int | None


@dataclass(frozen=True)
class LakeStatus:
    now_ns: int
    symbols: tuple[SymbolStatus, ...]
    problems: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return not self.problems


def lake_status(lake: Path, now_ns: int, stale_after_ns: int) -> LakeStatus:
    """What ``status --lake`` prints, computed (raises ValueError for a corrupt cursor or gap)."""
    from tradelake.adapters.duckdb_lake import connect
    from tradelake.adapters.lake_files import FileCursorStore, read_gaps
    from tradelake.partitions import TRADES_PREFIX

    con = connect(lake)
    rows = con.execute(
        """
        SELECT symbol, max(ts_ns),
               count(*) FILTER (WHERE ts_ns >= $hour),
               count(*) FILTER (WHERE ts_ns >= $day)
        FROM trades GROUP BY symbol
        """,
        {"hour": now_ns - NS_PER_HOUR, "day": now_ns - NS_PER_DAY},
    ).fetchall()
    trades = {symbol: (newest, h, d) for symbol, newest, h, d in rows}
    cursor = FileCursorStore(lake).load()
    gaps = [g for g in read_gaps(lake) if g.detected_ns >= now_ns - NS_PER_DAY]
    names = sorted(set(trades) | set(cursor.symbols) | {g.symbol for g in gaps})
    symbols: list[SymbolStatus] = []
    problems: list[str] = []
    if not names:
        problems.append(f"no trades, cursor or gaps in {lake}: nothing has been captured there")
    for symbol in names:
        newest, last_hour, last_day = trades.get(symbol, (None, 0, 0))
        files = list((lake / TRADES_PREFIX / f"symbol={symbol}").glob("**/*.parquet"))
        own = [g for g in gaps if g.symbol == symbol]
        recent = [g for g in own if g.detected_ns >= now_ns - NS_PER_HOUR]
        position = cursor.symbols.get(symbol)
        status = SymbolStatus(
            symbol=symbol,
            newest_ns=newest,
            newest_file=max(files, key=lambda p: p.stat().st_mtime) if files else None,
            trades_1h=last_hour,
            trades_24h=last_day,
            gaps_24h=len(own),
            gap_span_24h_ns=sum(g.to_ts_ns - g.from_ts_ns + 1 for g in own),
            gaps_1h=len(recent),
            cursor_ns=position.ts_ns if position is not None and position.ts_ns >= 0 else None,
        )
        symbols.append(status)
        if newest is None:
            problems.append(f"{symbol}: no trade stored")
        elif now_ns - newest > stale_after_ns:
            problems.append(
                f"{symbol}: newest trade is {_duration(now_ns - newest)} old "
                f"(stale after {_duration(stale_after_ns)})"
            )
        if recent:
            problems.append(f"{symbol}: {len(recent)} gap(s) declared in the last hour")
    return LakeStatus(now_ns, tuple(symbols), tuple(problems))


def status_command(args: argparse.Namespace, now_ns: int | None = None) -> int:
    """Run it; ``now_ns`` is for tests."""
    if args.stage is not None:
        return stage_status_command(args)
    if args.region is not None:
        args.usage_error("--region goes with --stage, not with --lake")
    lake: Path = args.lake
    if not lake.exists():
        return _fail("status", f"there is no lake at {lake}: no such directory")
    if not lake.is_dir():
        return _fail("status", f"{lake} is a file, not a lake directory")
    now = time.time_ns() if now_ns is None else now_ns
    try:
        result = lake_status(lake, now, int(args.stale_after * NS_PER_MINUTE))
    except (ValueError, OSError) as exc:
        return _fail("status", str(exc))
    print(f"lake {lake} at {_time(now)}")
    for s in result.symbols:
        newest = (
            f"{_time(s.newest_ns)} ({_duration(now - s.newest_ns)} behind)"
            if s.newest_ns is not None
            else "none"
        )
        cursor = _time(s.cursor_ns) if s.cursor_ns is not None else "none"
        print(f"{s.symbol}")
        print(f"  newest trade   {newest}")
        print(f"  newest file    {s.newest_file.relative_to(lake) if s.newest_file else 'none'}")
        print(f"  trades         {s.trades_1h:,} in the last hour, {s.trades_24h:,} in 24 h")
        print(
            f"  gaps (24 h)    {s.gaps_24h} spanning {_duration(s.gap_span_24h_ns)}"
            f" ({s.gaps_1h} in the last hour)"
        )
        print(f"  cursor         {cursor}")
    if result.healthy:
        print("healthy")
        return 0
    for problem in result.problems:
        print(f"unhealthy: {problem}")
    return 1


# --- status --stage ----------------------------------------------------------------------------


class Execution(NamedTuple):
    """A RUNNING ingest execution; ``shard`` is None for a name the supervisor does not make."""

    name: str
    shard: int | None
    started_ns: int


class StoredFile(NamedTuple):
    """An object (or a partition's location) and when it was written."""

    key: str
    modified_ns: int


class Alarm(NamedTuple):
    name: str
    since_ns: int
    reason: str


@dataclass(frozen=True)
class StageFacts:
    """What ``adapters.aws_stage.stage_facts`` reads from a deployed stack."""

    stage: str
    region: str
    bucket: str
    switch_parameter: str
    switch: str | None
    """The parameter's value; None when it does not exist."""
    shards: tuple[tuple[str, ...], ...]
    running: tuple[Execution, ...]
    cursor_ns: Mapping[str, int]
    """Per symbol, the newest trade time of the cursor checkpoints."""
    newest_file: Mapping[str, StoredFile]
    """Per symbol, the newest object under trades/ in the last ``window_days``."""
    window_days: int
    partitions_found: int
    partitions_missing: tuple[StoredFile, ...]
    """In S3 but not in Glue: each location, with its first file's time."""
    gaps: tuple[Gap, ...]
    """Declared in the last 24 h."""
    alarms: tuple[Alarm, ...]
    """The stage's alarms in ALARM."""


def stage_problems(facts: StageFacts, now_ns: int, stale_after_ns: int) -> tuple[str, ...]:
    """Why the stage is unhealthy, one reason a line; empty when it is healthy."""
    problems = [*_switch_problems(facts), *_shard_problems(facts)]
    for symbol in (s for group in facts.shards for s in group):
        problems += _symbol_problems(facts, symbol, now_ns, stale_after_ns)
    problems += [
        f"partition {p.key} is in S3 but not in Glue (`tradelake repair-partitions --stage "
        f"{facts.stage} --bucket {facts.bucket}`)"
        for p in facts.partitions_missing
        if now_ns - p.modified_ns >= PARTITION_GRACE_NS
    ]
    problems += [
        f"alarm {a.name} in ALARM since {_time(a.since_ns)}: {a.reason}" for a in facts.alarms
    ]
    return tuple(problems)


def _switch_problems(facts: StageFacts) -> list[str]:
    from tradelake.supervise import parse_switch

    if facts.switch is None:
        return [f"the switch {facts.switch_parameter} does not exist (redeploy the stage)"]
    try:
        on = parse_switch(facts.switch)
    except ValueError:
        return [f"the switch {facts.switch_parameter} is {facts.switch!r}, not on/off"]
    return (
        [] if on else [f"ingestion is switched off (`tradelake switch on --stage {facts.stage}`)"]
    )


def _shard_problems(facts: StageFacts) -> list[str]:
    """Exactly one execution per shard: none is a stopped capture, two capture twice (one of
    them throttled by the ingest function's reserved concurrency)."""
    problems: list[str] = []
    for shard, symbols in enumerate(facts.shards):
        running = [e.name for e in facts.running if e.shard == shard]
        if not running:
            problems.append(f"shard {shard} ({', '.join(symbols)}): no ingest execution running")
        elif len(running) > 1:
            problems.append(
                f"shard {shard}: {len(running)} executions running ({', '.join(running)})"
            )
    return problems


def _symbol_problems(facts: StageFacts, symbol: str, now_ns: int, stale_ns: int) -> list[str]:
    problems: list[str] = []
    cursor = facts.cursor_ns.get(symbol)
    if cursor is None:
        problems.append(f"{symbol}: no cursor checkpoint holds it: nothing captured yet")
    elif now_ns - cursor > stale_ns:
        problems.append(
            f"{symbol}: lag {_duration(now_ns - cursor)} (the cursor's newest trade is at "
            f"{_time(cursor)}; stale after {_duration(stale_ns)})"
        )
    newest = facts.newest_file.get(symbol)
    stale_file_ns = stale_ns + FIREHOSE_BUFFER_NS
    if newest is None:
        problems.append(f"{symbol}: no file under trades/ in the last {facts.window_days} days")
    elif now_ns - newest.modified_ns > stale_file_ns:
        problems.append(
            f"{symbol}: newest file is {_duration(now_ns - newest.modified_ns)} old "
            f"(stale after {_duration(stale_file_ns)})"
        )
    recent = [g for g in facts.gaps if g.symbol == symbol and now_ns - g.detected_ns < NS_PER_HOUR]
    if recent:
        problems.append(f"{symbol}: {len(recent)} gap(s) declared in the last hour")
    return problems


def stage_status_command(
    args: argparse.Namespace, session: Any = None, now_ns: int | None = None
) -> int:
    """``status --stage``; ``session`` (a boto3 Session) and ``now_ns`` are for tests."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from tradelake.adapters.aws_stage import StageNotFoundError, stage_facts

    session = session or boto3.session.Session(region_name=args.region)
    if not session.region_name:
        return _fail("status", "no AWS region: pass --region or set AWS_REGION")
    now = time.time_ns() if now_ns is None else now_ns
    try:
        facts = stage_facts(session.client, args.stage, session.region_name, now)
    except NoCredentialsError:
        return _fail(
            "status",
            "no AWS credentials: set a profile (AWS_PROFILE, `aws sso login`) or the AWS_* "
            "variables for the stage's account",
        )
    except (StageNotFoundError, ValueError, BotoCoreError, ClientError) as exc:
        return _fail("status", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    problems = stage_problems(facts, now, int(args.stale_after * NS_PER_MINUTE))
    _print_stage(facts, now)
    if not problems:
        print("healthy")
        return 0
    for problem in problems:
        print(f"unhealthy: {problem}")
    return 1


def _print_stage(facts: StageFacts, now: int) -> None:
    print(f"stage {facts.stage} ({facts.region}), bucket s3://{facts.bucket}/, at {_time(now)}")
    print(f"switch           {facts.switch if facts.switch is not None else 'missing'}")
    for shard, symbols in enumerate(facts.shards):
        runs = [e for e in facts.running if e.shard == shard]
        what = ", ".join(
            f"{e.name} since {_time(e.started_ns)} ({_duration(now - e.started_ns)})" for e in runs
        )
        print(f"shard {shard:<10} {what or 'no execution running'} [{', '.join(symbols)}]")
    for e in facts.running:
        if e.shard is None:
            print(f"also running     {e.name} since {_time(e.started_ns)} (not a shard's name)")
    for symbol in (s for group in facts.shards for s in group):
        cursor = facts.cursor_ns.get(symbol)
        newest = facts.newest_file.get(symbol)
        gaps = [g for g in facts.gaps if g.symbol == symbol]
        print(symbol)
        print(
            "  lag            "
            + (
                f"{_duration(now - cursor)} (cursor at {_time(cursor)})"
                if cursor is not None
                else "no cursor"
            )
        )
        print(
            "  newest file    "
            + (
                f"{newest.key} ({_duration(now - newest.modified_ns)} old)"
                if newest
                else f"none in {facts.window_days} days"
            )
        )
        print(
            f"  gaps (24 h)    {len(gaps)} spanning "
            f"{_duration(sum(g.to_ts_ns - g.from_ts_ns + 1 for g in gaps))}"
        )
    print(
        f"partitions       {facts.partitions_found} in S3 over {facts.window_days} days, "
        f"{len(facts.partitions_missing)} not in Glue"
    )
    print(f"alarms           {len(facts.alarms)} in ALARM")


def _time(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // NS_PER_S)) + "Z"


def _duration(ns: int) -> str:
    seconds = max(ns, 0) / NS_PER_S
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _fail(command: str, message: str) -> int:
    print(f"tradelake {command}: {message}", file=sys.stderr)
    return 1
