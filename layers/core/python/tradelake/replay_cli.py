"""``tradelake replay-errors --stage S [--since ISO] [--dry-run]``: Firehose error output, re-sent.

Runs from a laptop with AWS credentials against the deployed stack of stage ``S``, whose names
are resolved as ``tradelake backfill`` resolves them: the data bucket of
``RollupConfig.for_stage`` (account from STS, region from ``--region`` or the AWS configuration)
and the delivery stream ``tradelake-<stage>-trades`` (resources/firehose.yml). What it does and
what it keeps is ``tradelake.replay_errors``. ``--since`` replays only the error objects written
at or after that time; ``--dry-run`` reads and counts, sends nothing and moves nothing.

The trades go through ``FirehoseSink``, which owns every retry of PutRecordBatch, so botocore
makes one attempt per call (as in the ingest function). Exit 0 when every object read was
replayed (or, with ``--dry-run``, would be), 1 when something did not parse or a call failed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tradelake.backfill import stage_arg, time_arg
from tradelake.config import RollupConfig
from tradelake.replay_errors import DecodedObject, replay_errors, sender


def delivery_stream(stage: str) -> str:
    """The stream serverless.yml names for ``stage`` (``${self:service}-${sls:stage}-trades``)."""
    return f"tradelake-{stage}-trades"


def add_parser(commands: Any) -> None:
    """``tradelake replay-errors``, added to the CLI's subcommands."""
    replay = commands.add_parser(
        "replay-errors",
        help="re-send the trades of a deployed stage's Firehose error output (errors/)",
        description="Read the Firehose error objects under errors/ of the stage's bucket, "
        "re-send the trades their records hold through the delivery stream and move each fully "
        "replayed object under errors/replayed/. Needs AWS credentials for the stage's account.",
    )
    replay.add_argument("--stage", type=stage_arg, required=True, help="e.g. prod")
    replay.add_argument(
        "--since", type=time_arg, metavar="ISO", help="only objects written at or after this"
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="read and count only: send nothing, move nothing"
    )
    replay.add_argument("--region", help="default: the AWS configuration's region")


def replay_command(args: argparse.Namespace, session: Any = None) -> int:
    """Run it; ``session`` (a boto3 Session) is for tests."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    from tradelake.adapters.firehose_sink import FirehoseDeliveryError, FirehoseSink
    from tradelake.adapters.s3_errors import S3ErrorStore

    session = session or boto3.session.Session(region_name=args.region)
    if not session.region_name:
        return _fail("no AWS region: pass --region or set AWS_REGION")
    try:
        account = session.client("sts").get_caller_identity()["Account"]
        bucket = RollupConfig.for_stage(args.stage, account, session.region_name).data_bucket
        stream = delivery_stream(args.stage)
        firehose = session.client(
            "firehose", config=Config(retries={"mode": "standard", "total_max_attempts": 1})
        )
        print(
            f"{'reading' if args.dry_run else 'replaying'} s3://{bucket}/errors/ "
            f"{'(dry run)' if args.dry_run else f'into {stream}'}"
            f"{f', objects since {args.since:%Y-%m-%dT%H:%M:%SZ}' if args.since else ''}",
            file=sys.stderr,
        )
        report = replay_errors(
            S3ErrorStore(session.client("s3"), bucket),
            sender(FirehoseSink(firehose, stream)),
            since=args.since,
            dry_run=args.dry_run,
            on_object=_progress,
        )
    except (BotoCoreError, ClientError, FirehoseDeliveryError, RuntimeError) as exc:
        return _fail(f"{exc} (objects replayed before this one are already moved)")
    for key, bad in report.kept.items():
        print(f"tradelake replay-errors: kept s3://{bucket}/{key}: {bad[0]}", file=sys.stderr)
        if len(bad) > 1:
            print(f"  … and {len(bad) - 1} more that did not parse", file=sys.stderr)
    print(report.summary(args.dry_run))
    return 1 if report.kept else 0


def _progress(key: str, decoded: DecodedObject) -> None:
    print(
        f"  {key}: {decoded.records} record(s), {len(decoded.trades)} trade(s), "
        f"{len(decoded.bad)} did not parse",
        file=sys.stderr,
    )


def _fail(message: str) -> int:
    print(f"tradelake replay-errors: {message}", file=sys.stderr)
    return 1
