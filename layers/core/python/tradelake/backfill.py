"""``tradelake backfill --stage S --from ISO --to ISO``: the rollup Lambda's job, for a range.

Runs from a laptop with AWS credentials (boto3's usual chain: environment, profile, SSO), against
the deployed stack of stage ``S``: its bucket, Glue database and Athena workgroup are named the
way serverless.yml names them (``RollupConfig.for_stage``), the account coming from STS and the
region from ``--region`` or the AWS configuration. Every hour from ``--from``'s hour up to
``--to`` (exclusive) that has ended is rolled up exactly as the hourly function does
(``tradelake.rollup.roll_up``): the view, then delete, UNLOAD and register per rollup, symbol
and hour. Reruns are harmless. Exit 0 when every rollup succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from typing import Any

from tradelake.config import RollupConfig
from tradelake.rollup import QueryOutcome, Target, hours_between

_STAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,30}")


def stage_arg(text: str) -> str:
    if not _STAGE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a stage name: letters, digits and '-', e.g. prod"
        )
    return text


def time_arg(text: str) -> datetime:
    """An ISO date or date-time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO time, e.g. 2026-11-27, 2026-11-27T14:00 (UTC) or "
            "2026-11-27T15:00+01:00"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def add_parser(commands: Any) -> None:
    """``tradelake backfill``, added to the CLI's subcommands."""
    backfill = commands.add_parser(
        "backfill",
        help="run the AWS rollups (Athena) of a deployed stage for a range of hours",
        description="Roll up every closed hour in [--from, --to) on AWS, as the hourly rollup "
        "function does: needs AWS credentials for the stage's account.",
    )
    backfill.add_argument("--stage", type=stage_arg, required=True, help="e.g. prod")
    backfill.add_argument(
        "--from", dest="start", type=time_arg, required=True, metavar="ISO", help="first hour"
    )
    backfill.add_argument(
        "--to", dest="end", type=time_arg, required=True, metavar="ISO", help="end, exclusive"
    )
    backfill.add_argument("--region", help="default: the AWS configuration's region")


def backfill_command(
    args: argparse.Namespace, session: Any = None, now: datetime | None = None
) -> int:
    """Run it; ``session`` (a boto3 Session) and ``now`` are for tests."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from tradelake.adapters.athena import roll_up_stack

    if args.start >= args.end:
        return _fail("--from must be before --to")
    hours = hours_between(args.start, args.end, now or datetime.now(UTC))
    if not hours:
        return _fail("no hour in that range has ended yet")
    session = session or boto3.session.Session(region_name=args.region)
    if not session.region_name:
        return _fail("no AWS region: pass --region or set AWS_REGION")
    try:
        account = session.client("sts").get_caller_identity()["Account"]
        config = RollupConfig.for_stage(args.stage, account, session.region_name)
        print(
            f"rolling up {len(hours)} hour(s) from {hours[0]:%Y-%m-%dT%H:00Z} to "
            f"{hours[-1]:%Y-%m-%dT%H:00Z} in s3://{config.data_bucket}/rollups/ "
            f"(workgroup {config.workgroup}, database {config.glue_database})",
            file=sys.stderr,
        )
        report = roll_up_stack(
            config,
            hours,
            athena=session.client("athena"),
            s3=session.client("s3"),
            glue=session.client("glue"),
            on_result=_progress,
        )
    except (BotoCoreError, ClientError) as exc:
        return _fail(str(exc))
    for failure in report.failures:
        print(f"tradelake backfill: failed: {failure}", file=sys.stderr)
    print(
        f"{len(report.written)} rollup(s) written, {len(report.failures)} failed, "
        f"{report.bytes_scanned / 1e6:,.1f} MB scanned by {report.queries} queries",
        file=sys.stderr,
    )
    return 1 if report.failures else 0


def _progress(target: Target, outcome: QueryOutcome) -> None:
    scanned = f"{outcome.bytes_scanned / 1e6:,.1f} MB"
    print(f"  {target}: {outcome.state} ({scanned})", file=sys.stderr)


def _fail(message: str) -> int:
    print(f"tradelake backfill: {message}", file=sys.stderr)
    return 1
