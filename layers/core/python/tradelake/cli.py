"""``tradelake``: capture, simulate, demo, query and rollup, each a thin shell over the core.

A bad argument gets one line saying what is wrong and how to fix it, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from tradelake.analytics_cli import add_query_arguments, add_rollup_arguments
from tradelake.backfill import add_parser as add_backfill_parser
from tradelake.capture import Capture, CaptureConfig, SourceUnreachable, SubscriptionRejected
from tradelake.compact_cli import add_parser as add_compact_parser
from tradelake.feed import CaptureStats, FeedConfig
from tradelake.markets import UnknownSymbolError, market_of
from tradelake.oncall import add_parsers as add_oncall_parsers
from tradelake.reconcile import add_parser as add_repair_parser
from tradelake.replay_cli import add_parser as add_replay_parser
from tradelake.simulator.cli import add_arguments as add_simulate_arguments

DEFAULT_URL = "wss://ws.phemex.com"
DEFAULT_LAKE = Path("lake")
LOCAL_FLUSH_AGE_S = 30.0
"""The local sink writes a file at least this often: bounds what a crash can cost."""


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line with the fix, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def symbols_arg(text: str) -> tuple[str, ...]:
    """``BTCUSD,BTCUSDT,sBTCUSDT`` → a tuple of checked symbols."""
    symbols = tuple(s.strip() for s in text.split(",") if s.strip())
    if not symbols:
        raise argparse.ArgumentTypeError("give at least one symbol, e.g. --symbols BTCUSD,BTCUSDT")
    for symbol in symbols:
        try:
            market_of(symbol)
        except UnknownSymbolError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if len(set(symbols)) != len(symbols):
        raise argparse.ArgumentTypeError(f"a symbol is listed twice in {text!r}")
    if len(symbols) > 20:
        raise argparse.ArgumentTypeError("Phemex allows 20 subscriptions a connection: list ≤ 20")
    return symbols


def url_arg(text: str) -> str:
    if not text.startswith(("ws://", "wss://")):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a websocket URL: use wss://ws.phemex.com or ws://127.0.0.1:PORT"
        )
    return text


def positive_arg(text: str, unit: str = "") -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number{unit}")
    return value


def seconds_arg(text: str) -> float:
    return positive_arg(text, " of seconds")


def count_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0 or more)")
    return int(text)


def port_arg(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to 65535")
    return int(text)


def parser() -> Parser:
    p = Parser(prog="tradelake", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    capture = commands.add_parser("capture", help="capture live trades into the local lake")
    capture.add_argument("--url", type=url_arg, default=DEFAULT_URL, help=f"default {DEFAULT_URL}")
    capture.add_argument(
        "--symbols",
        type=symbols_arg,
        default=("BTCUSD",),
        help="comma-separated, e.g. BTCUSD,BTCUSDT,sBTCUSDT (default BTCUSD)",
    )
    capture.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="default ./lake")
    capture.add_argument("--duration", type=seconds_arg, help="seconds to run (default: Ctrl-C)")
    capture.add_argument(
        "--record", type=Path, metavar="FILE", help="also keep every raw frame (gzip JSON lines)"
    )
    capture.add_argument(
        "--replay",
        action="store_true",
        help="the source replays a recorded tape or runs faster than real time: accept trade "
        "times far from the local clock (live capture refuses rows over a day old or a minute "
        "ahead)",
    )
    capture.add_argument("-v", "--verbose", action="store_true", help="log every warning")

    simulate = commands.add_parser(
        "simulate",
        help="run the Phemex simulator on 127.0.0.1",
        description="A Phemex-protocol exchange on 127.0.0.1 for capture tests and demos.",
    )
    add_simulate_arguments(simulate)

    demo = commands.add_parser("demo", help="the whole pipeline offline, proved complete")
    demo.add_argument("--lake", type=Path, default=Path("lake-demo"), help="default ./lake-demo")
    demo.add_argument("--hours", type=float, default=4.0, help="simulated market hours")
    demo.add_argument("--seconds", type=seconds_arg, default=25.0, help="wall-clock budget")
    demo.add_argument("--seed", type=int, default=7)

    query = commands.add_parser(
        "query",
        help="run SQL (DuckDB) over the lake: views trades, trades_stored, gaps, ohlcv_1m/1h",
        description="DuckDB SQL over the lake, or a ready query (--named). Views: trades (each"
        " trade_key once, the first received copy), trades_stored (every stored row, duplicates"
        " included: for audits), gaps (the gap ledger), ohlcv_1m and ohlcv_1h (once rolled up)."
        " Read-only: SELECT (DESCRIBE, SHOW, SUMMARIZE too) and EXPLAIN SELECT; a statement that"
        " writes, attaches or installs is refused, and no file outside the lake is opened.",
    )
    add_query_arguments(query)
    rollup = commands.add_parser(
        "rollup",
        help="write the OHLCV rollups of the lake's hours under <lake>/rollups/",
        description="Roll up each symbol's hour partitions (ohlcv_1m, ohlcv_1h: the SQL Athena"
        " runs) into <lake>/rollups/<name>/symbol=…/…/hour=…/, replacing what a run before"
        " wrote; a rerun picks up trades that arrived late.",
    )
    add_rollup_arguments(rollup)
    add_compact_parser(commands)

    report = commands.add_parser(
        "report",
        help="write the lake's charts as one self-contained HTML file (works offline)",
        description="Per symbol: price over time by side, OHLCV candles with buy/sell volume,"
        " completeness with the declared gaps, and the top-50 prices heat map by side.",
    )
    report.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="default ./lake")
    report.add_argument("--out", type=Path, metavar="FILE", help="default <lake>/report.html")
    add_backfill_parser(commands)
    add_repair_parser(commands)
    add_replay_parser(commands)
    add_oncall_parsers(commands)
    return p


SIGPIPE_EXIT = 141
"""What a shell reports for a program killed by SIGPIPE (128 + 13), as ``head`` leaves it."""


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "verbose", False) else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader stopped reading (`tradelake query ... | head`): no error of ours, and no
        # traceback. stdout goes to /dev/null so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_EXIT


def _run(args: argparse.Namespace) -> int:
    if args.command == "capture":
        return capture_command(args)
    if args.command == "simulate":
        from tradelake.simulator.cli import simulate

        return simulate(args)
    if args.command == "demo":
        from tradelake.demo import run_demo

        return 0 if run_demo(args.lake, args.hours, args.seconds, args.seed).complete else 1
    if args.command == "backfill":
        from tradelake.backfill import backfill_command

        return backfill_command(args)
    if args.command == "repair-partitions":
        from tradelake.reconcile import repair_command

        return repair_command(args)
    if args.command == "replay-errors":
        from tradelake.replay_cli import replay_command

        return replay_command(args)
    if args.command == "switch":
        from tradelake.oncall import switch_command

        return switch_command(args)
    if args.command == "status":
        from tradelake.oncall import status_command

        return status_command(args)
    if args.command == "report":
        from tradelake.report import report_command

        return report_command(args.lake, args.out)
    if args.command == "compact":
        from tradelake.compact_cli import compact_command

        return compact_command(args)
    if args.command == "rollup":
        from tradelake.analytics_cli import rollup

        return rollup(args)
    from tradelake.analytics_cli import query

    return query(args)


def capture_command(args: argparse.Namespace) -> int:
    from tradelake.adapters import websocket_source
    from tradelake.adapters.lake_files import (
        FileCursorStore,
        JsonlGapLedger,
        writable_lake_problem,
    )
    from tradelake.adapters.parquet_sink import ParquetSink
    from tradelake.adapters.products_http import fetch_products
    from tradelake.adapters.tape_file import TapeRecorder

    problem = writable_lake_problem(args.lake)  # before connecting: one line, not a traceback
    if problem:
        print(f"tradelake capture: {problem}", file=sys.stderr)
        return 1
    recorder = TapeRecorder(args.record) if args.record else None
    status = StatusLine(sys.stderr)
    feed = FeedConfig(max_row_age_s=None, max_row_lead_s=None) if args.replay else FeedConfig()
    capture = Capture(
        CaptureConfig(url=args.url, symbols=args.symbols, feed=feed, fail_fast=True),
        sink=ParquetSink(args.lake, max_age_s=LOCAL_FLUSH_AGE_S),
        cursor_store=FileCursorStore(args.lake),
        gap_ledger=JsonlGapLedger(args.lake),
        connect=websocket_source.connect,
        products=fetch_products(args.url),
        recorder=recorder.write if recorder else None,
        on_status=status.update,
    )
    started = time.monotonic()
    deadline = started + args.duration if args.duration else None
    try:
        capture.run(deadline)
    except (SourceUnreachable, SubscriptionRejected) as exc:
        status.close()
        print(f"tradelake capture: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk: the sink kept its buffer, the cursor did not advance
        status.close()
        print(f"tradelake capture: {write_failure(exc, args.lake)}", file=sys.stderr)
        return 1
    finally:
        if recorder:
            recorder.close()
    status.close()
    print(summary(capture.stats, time.monotonic() - started, args.lake), file=sys.stderr)
    if recorder:
        print(f"recorded {recorder.frames:,} frames to {recorder.path}", file=sys.stderr)
    for reason in capture.stats.rejected.values():
        print(f"tradelake capture: not captured: {reason}", file=sys.stderr)
    return 1 if capture.stats.rejected else 0


def write_failure(exc: OSError, lake: Path) -> str:
    """One line for a write that failed mid-capture: what failed, and that nothing is lost."""
    what = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
    return (
        f"cannot write into {lake}/ ({what}); nothing acknowledged is lost: the cursor covers"
        " only trades written, and the next run resumes from it (free some space, run again)"
    )


class StatusLine:
    """One live line on a terminal (rewritten in place), a line every 10 s otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last = (time.monotonic(), 0)
        self._next_plain = 0.0

    def update(self, stats: CaptureStats) -> None:
        now = time.monotonic()
        then, received_then = self._last
        rate = (stats.received - received_then) / max(now - then, 1e-9)
        self._last = (now, stats.received)
        per_symbol = " ".join(f"{s} {x.received:,}" for s, x in stats.symbols.items())
        line = (
            f"{rate:8,.0f} trades/s | {per_symbol} | written {stats.written:,} | "
            f"reconnects {stats.reconnects} | gaps {stats.gaps} | dup {stats.duplicates:,}"
        )
        if self.tty:
            self.stream.write(f"\r\x1b[K{line}")
            self.stream.flush()
        elif now >= self._next_plain:
            self._next_plain = now + 10.0
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def summary(stats: CaptureStats, elapsed_s: float, lake: Path) -> str:
    rows = [
        f"{'symbol':<12}{'received':>12}{'written':>12}{'dup dropped':>13}{'gaps':>6}"
        f"{'bad rows':>10}"
    ]
    rows += [
        f"{s:<12}{x.received:>12,}{x.written:>12,}{x.duplicates:>13,}{x.gaps:>6}{x.bad_rows:>10,}"
        for s, x in stats.symbols.items()
    ]
    return "\n".join(
        [
            f"captured for {elapsed_s:.1f} s into {lake}/ "
            f"({stats.connections} connections, {stats.reconnects} reconnects, "
            f"{stats.malformed_frames} malformed frames skipped)",
            *rows,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
