"""``tradelake rollup`` and ``tradelake query``: the analytics of the local lake, with DuckDB.

``query`` runs DuckDB SQL as typed, or a ready query of ``sql/`` (``--named``) translated from
Athena's dialect by ``analytics.duckdb_sql``: the same SQL as on AWS.

``query`` only reads, and the lake is safe from what is typed into it. Two locks, because each
alone has a hole: the connection (``read_only``) may open files under the lake only, loads no
extension (an ``INSTALL`` would reach the network) and can no longer change a setting, but
DuckDB may still *write* under an allowed directory (``COPY … TO '<lake>/trades/…'``); so every
statement must also be a SELECT (``DESCRIBE``, ``SHOW``, ``SUMMARIZE`` and ``FROM …`` parse as
SELECT) or an EXPLAIN of one (``EXPLAIN ANALYZE`` runs its statement). A refused statement is
one line and exit 1, like SQL DuckDB refuses; nothing has run by then. Empty SQL is a usage
error (exit 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from tradelake.analytics import READY_QUERIES, ROLLUPS, parameters
from tradelake.catalog import ROLLUPS_PREFIX
from tradelake.model import EARLIEST_NS, LATEST_NS

if TYPE_CHECKING:
    import duckdb

FORMATS = ("table", "csv", "json")
_EXPLAINED = re.compile(r"\s*EXPLAIN\s+(?:ANALY[SZ]E\s+|\([^)]*\)\s*)?(.*)", re.I | re.S)
"""The statement an EXPLAIN [ANALYZE | (options)] is about."""


def time_arg(text: str) -> datetime:
    """``backfill.time_arg`` (ISO, UTC unless it says otherwise), in whole milliseconds (``ts``)."""
    from tradelake.backfill import time_arg as iso_time

    value = iso_time(text)
    if value.microsecond % 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is finer than the lake's milliseconds")
    return value


def symbol_arg(text: str) -> str:
    from tradelake.cli import symbols_arg

    symbols = symbols_arg(text)
    if len(symbols) > 1:
        raise argparse.ArgumentTypeError(f"one symbol, not {text!r}")
    return symbols[0]


def _lake_argument(p: argparse.ArgumentParser) -> None:
    from tradelake.cli import DEFAULT_LAKE

    p.add_argument("--lake", type=Path, default=DEFAULT_LAKE, help="default ./lake")


def add_rollup_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``tradelake rollup``."""
    _lake_argument(p)
    p.add_argument(
        "--from",
        dest="start",
        type=time_arg,
        metavar="ISO",
        help="roll up the hours from the one holding this time (default: the lake's first)",
    )
    p.add_argument(
        "--to",
        dest="end",
        type=time_arg,
        metavar="ISO",
        help="... to the hours before this time, exclusive (default: the lake's last)",
    )
    p.set_defaults(usage_error=p.error)


def add_query_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``tradelake query``: SQL, or ``--named`` with its parameters."""
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("sql", nargs="?", help="DuckDB SQL")
    what.add_argument(
        "--named",
        choices=READY_QUERIES,
        help="a ready query of sql/ (Athena's SQL, translated for DuckDB)",
    )
    _lake_argument(p)
    p.add_argument("--format", choices=FORMATS, default="table", help="default table")
    p.add_argument("--symbol", type=symbol_arg, help="for --named queries of one symbol")
    p.add_argument(
        "--from", dest="start", type=time_arg, metavar="ISO", help="for --named (default 2000)"
    )
    p.add_argument(
        "--to", dest="end", type=time_arg, metavar="ISO", help="for --named, exclusive (2100)"
    )
    p.set_defaults(usage_error=p.error)


def rollup(args: argparse.Namespace) -> int:
    """Write the rollups of the hours in range; a file DuckDB cannot read is one line, exit 1."""
    import duckdb

    from tradelake.adapters.duckdb_rollup import rollup_lake

    if args.start and args.end and args.start >= args.end:
        args.usage_error("--from must be before --to")
    if no_lake(args.lake, "rollup"):
        return 1
    started = time.monotonic()
    try:
        files = rollup_lake(args.lake, args.start, args.end)
    except (duckdb.Error, ValueError) as exc:  # ValueError: a trade outside its hour's partition
        print(f"tradelake rollup: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    hours = len(files) // len(ROLLUPS)
    print(
        f"rolled up {hours} symbol-hour{'s' * (hours != 1)} of {args.lake}/ into "
        f"{args.lake / ROLLUPS_PREFIX}/ ({', '.join(ROLLUPS)}) in "
        f"{time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return 0


def query(args: argparse.Namespace) -> int:
    """Print the result; SQL that DuckDB or ``writing_statement`` refuses is one line, exit 1."""
    import duckdb

    from tradelake.adapters.duckdb_lake import connect

    if args.named:
        sql = _named_sql(args)
    else:
        for option, value in (
            ("--symbol", args.symbol),
            ("--from", args.start),
            ("--to", args.end),
        ):
            if value is not None:
                args.usage_error(f"{option} goes with --named, not with SQL")
        sql = args.sql
    if not sql.strip():
        args.usage_error("the SQL is empty")
    if no_lake(args.lake, "query"):
        return 1
    try:
        con = connect(args.lake)
        read_only(con, args.lake)
        statements = con.extract_statements(sql)
        if not statements:
            args.usage_error("the SQL holds no statement")
        refused = writing_statement(con, statements)
        if refused:
            print(f"tradelake query: refused: {refused}", file=sys.stderr)
            return 1
        result = con.sql(sql)
        if result is not None:
            _print(result, args.format)
    except duckdb.Error as exc:
        print(f"tradelake query: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


def read_only(con: duckdb.DuckDBPyConnection, lake: Path) -> None:
    """Lock ``con`` (made by ``duckdb_lake.connect``, views already bound) to reading ``lake``:
    no file outside it, no extension, no setting changed afterwards."""
    root = str(lake.absolute()).replace("'", "''")
    con.execute(f"SET allowed_directories = ['{root}/']")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def writing_statement(
    con: duckdb.DuckDBPyConnection, statements: list[duckdb.Statement]
) -> str | None:
    """Why the first statement that is not a read is refused, or None when all only read."""
    for statement in statements:
        kind = statement.type.name
        if kind == "EXPLAIN":
            explained = _EXPLAINED.fullmatch(statement.query)
            try:
                inner = con.extract_statements(explained.group(1)) if explained else []
            except duckdb.Error:
                inner = []
            if inner and all(s.type.name == "SELECT" for s in inner):
                continue
            kind = "this EXPLAIN"
        elif kind == "SELECT":
            continue
        return (
            f"{kind} is not a query: `tradelake query` only reads the lake (SELECT, DESCRIBE, "
            "SHOW, SUMMARIZE, EXPLAIN SELECT)"
        )
    return None


def no_lake(lake: Path, command: str) -> bool:
    """Say so in one line if ``lake`` is not a lake (missing, or a file): DuckDB would read 0."""
    from tradelake.adapters.lake_files import lake_problem

    problem = lake_problem(lake)
    if problem:
        print(f"tradelake {command}: {problem}", file=sys.stderr)
    return problem is not None


def _named_sql(args: argparse.Namespace) -> str:
    """The DuckDB SQL of ``--named``, its parameters checked against what the query takes."""
    from tradelake.analytics import duckdb_sql

    wanted = parameters(args.named)
    if "symbol" in wanted and args.symbol is None:
        args.usage_error(f"--named {args.named} needs --symbol")
    if "symbol" not in wanted and args.symbol is not None:
        args.usage_error(f"--named {args.named} is of every symbol: no --symbol")
    start = args.start or datetime.fromtimestamp(EARLIEST_NS // 10**9, UTC)
    end = args.end or datetime.fromtimestamp(LATEST_NS // 10**9, UTC)
    if start >= end:
        args.usage_error("--from must be before --to")
    params = {"symbol": args.symbol, "start": start, "end": end}
    return duckdb_sql(args.named, **{name: params[name] for name in wanted})


def _print(result: duckdb.DuckDBPyRelation, form: str) -> None:
    if form == "table":
        result.show(max_width=200)
        return
    rows = result.fetchall()
    if form == "csv":
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(result.columns)
        out.writerows([[_text(value) for value in row] for row in rows])
        return
    # JSON: exact decimals as strings (a JSON reader would make doubles of numbers), times ISO
    objects = [
        json.dumps(dict(zip(result.columns, row, strict=True)), default=lambda v: str(_text(v)))
        for row in rows
    ]
    print("[" + ",\n ".join(objects) + "]")


def _text(value: object) -> object:
    """Decimals in plain notation (``0.0000000000``, not ``0E-10``), times as ISO 8601."""
    if isinstance(value, Decimal):
        return f"{value:f}"
    return value.isoformat() if isinstance(value, date | dt_time) else value
