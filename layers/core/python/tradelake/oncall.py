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
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NS_PER_S = 1_000_000_000
NS_PER_MINUTE = 60 * NS_PER_S
NS_PER_HOUR = 60 * NS_PER_MINUTE
NS_PER_DAY = 24 * NS_PER_HOUR
DEFAULT_STALE_AFTER_MIN = 15.0


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
        help="is the local lake healthy? newest trade, lag, gaps and cursor per symbol",
        description="Per symbol: newest trade and its lag, newest file, trades in the last hour "
        "and 24 h, gaps declared in the last 24 h, the cursor. Exit 0 when healthy, 1 when not "
        "(no symbol, a symbol with no trade newer than --stale-after, or a gap declared in the "
        "last hour). `--stage` (a deployed stack) is not built yet.",
    )
    status.add_argument("--lake", type=Path, required=True, help="the local lake directory")
    status.add_argument(
        "--stale-after",
        type=stale_arg,
        default=DEFAULT_STALE_AFTER_MIN,
        metavar="MINUTES",
        help=f"a symbol with no newer trade is stale (default {DEFAULT_STALE_AFTER_MIN:g})",
    )


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
