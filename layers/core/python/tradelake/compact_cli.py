"""``tradelake compact``: merge each closed hour's small files into one (``parquet_compaction``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from tradelake.analytics_cli import no_lake, symbol_arg


def add_parser(commands: Any) -> None:
    """``tradelake compact``, added to the CLI's subcommands."""
    from tradelake.cli import DEFAULT_LAKE, count_arg

    compact = commands.add_parser(
        "compact",
        help="merge each closed hour's small trade files into one, stored duplicates removed",
        description="The capture writes one file per symbol and hour per flush. For every hour"
        " that ended --grace-minutes ago or earlier and holds several files, write one file of"
        " their trades (each trade_key once: the copy the trades view reads), rename it into"
        " place, then delete exactly the files it merged. Safe while a capture runs; a file that"
        " lands in a compacted hour later is merged by the next run.",
    )
    compact.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="default ./lake")
    compact.add_argument("--symbol", type=symbol_arg, help="only this symbol (default: all)")
    compact.add_argument(
        "--grace-minutes",
        type=count_arg,
        metavar="N",
        help="an hour is closed N minutes after it ends (default 10)",
    )


def compact_command(args: argparse.Namespace) -> int:
    """Compact and print one line per partition and a total; a bad file is one line, exit 1."""
    from tradelake.adapters.parquet_compaction import DEFAULT_GRACE_S, compact_lake

    if no_lake(args.lake, "compact"):
        return 1
    grace_s = DEFAULT_GRACE_S if args.grace_minutes is None else args.grace_minutes * 60
    started = time.monotonic()
    try:
        done, open_hours = compact_lake(args.lake, time.time_ns(), grace_s, args.symbol)
    except (OSError, ValueError) as exc:
        print(f"tradelake compact: {exc}", file=sys.stderr)
        return 1
    for c in done:
        print(
            f"{c.partition}: {c.files_before:,} files -> 1, {c.rows_after:,} rows,"
            f" {c.duplicates:,} duplicates removed"
            + (f", {c.leftovers} staged files of a crashed run deleted" if c.leftovers else "")
        )
    files = sum(c.files_before for c in done)
    print(
        f"compacted {len(done)} partition{'s' * (len(done) != 1)} of {args.lake}/:"
        f" {files:,} files -> {len(done)}, {sum(c.rows_after for c in done):,} rows kept,"
        f" {sum(c.duplicates for c in done):,} duplicates removed in"
        f" {time.monotonic() - started:.1f} s; {open_hours} hour partition"
        f"{'s' * (open_hours != 1)} still open (not ended {grace_s // 60} min ago)",
        file=sys.stderr,
    )
    return 0
