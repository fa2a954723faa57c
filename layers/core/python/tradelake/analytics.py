"""The analytics SQL: one Athena (Trino) file per query, rendered for Athena or for DuckDB.

The files are ``tradelake/sql/<name>.sql`` (``layers/core/python/tradelake/sql/``), read with
importlib.resources, so the Lambda core layer ships them beside the code that renders them.
Their parameters are written ``{symbol}``, ``{year}``, ``{month}``, ``{day}``, ``{hour}``,
``{start}``, ``{end}`` and rendered here as SQL literals from checked values, never pasted: a
symbol must have Phemex's shape (``markets.SYMBOL_PATTERN``), partition values are digits (strings,
as the partition columns are in Glue), times are aware datetimes in whole milliseconds (the
precision of ``ts``), written as UTC ``TIMESTAMP`` literals.

Athena runs ``trino_sql`` as it is. DuckDB runs ``duckdb_sql``: the same statement translated by
sqlglot from Trino through its schema-aware optimiser (the types of ``schema.py``), which knows
each expression's type, so the two operators that mean something else in DuckDB are rewritten:

- ``bigint / bigint`` truncates in Trino; sqlglot's default, a DOUBLE division then ``TRUNC``,
  is off by one near a multiple past 2^53 (any ``ts_ns``), so it becomes DuckDB's ``//``, which
  truncates toward zero as Trino does;
- a decimal division is exact in Trino (the larger scale, rounded half up) but DOUBLE in DuckDB,
  so it becomes ``DECIMAL_DIVIDE``, a function that ``duckdb_lake.connect`` defines with
  ``divide_decimals`` below. The SQL must cast such a division to ``DECIMAL(p, s)``, ``s`` being
  Trino's result scale, which tells the function its scale (checked when it runs).

This module runs in Lambda: it imports neither duckdb nor pyarrow, and sqlglot (a local extra)
only inside ``duckdb_sql`` and ``duckdb_rollup_sql``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

from tradelake.markets import SYMBOL_PATTERN
from tradelake.partitions import hour_path
from tradelake.schema import GAP_COLUMNS, PARTITION_KEYS, TRADE_COLUMNS

if TYPE_CHECKING:
    from sqlglot import exp

QUERIES: tuple[str, ...] = (
    "trades_view",
    "ohlcv_1m",
    "ohlcv_1h",
    "top_prices_by_side",
    "price_side_over_time",
    "completeness",
)
"""Every file of ``sql/``: the de-duplicating view, the rollups, and the ready queries."""
ROLLUPS: tuple[str, ...] = ("ohlcv_1m", "ohlcv_1h")
"""Queries run per symbol and hour partition (``hour_params``), their results kept in the lake."""
READY_QUERIES: tuple[str, ...] = ("top_prices_by_side", "price_side_over_time", "completeness")
"""Queries for people and dashboards: the original two analyses and completeness."""

DECIMAL_DIVIDE = "trino_decimal_divide"
"""The DuckDB function (``divide_decimals``) that ``duckdb_sql`` calls for a decimal division."""

_SQL_TABLES = {
    "trades_stored": TRADE_COLUMNS + PARTITION_KEYS,
    "trades": TRADE_COLUMNS + PARTITION_KEYS,
    "gaps": GAP_COLUMNS,
}
"""What the SQL files read, with their Glue types: the optimiser's schema."""


def _symbol(value: object) -> str:
    if not (isinstance(value, str) and SYMBOL_PATTERN.fullmatch(value)):
        raise ValueError(f"{value!r} is not a Phemex symbol")
    return f"'{value}'"


def _digits(width: int) -> Callable[[object], str]:
    def literal(value: object) -> str:
        if not (isinstance(value, str) and re.fullmatch(f"[0-9]{{{width}}}", value)):
            raise ValueError(f"{value!r} is not a partition value of {width} digits")
        return f"'{value}'"

    return literal


def _timestamp(value: object) -> str:
    if not (isinstance(value, datetime) and value.tzinfo is not None):
        raise ValueError(f"{value!r} is not a datetime with a time zone")
    if value.microsecond % 1000:
        raise ValueError(f"{value.isoformat()} is finer than ts, which is in milliseconds")
    utc = value.astimezone(UTC).replace(tzinfo=None)
    return f"TIMESTAMP '{utc.isoformat(sep=' ', timespec='milliseconds')}'"


_LITERALS: Mapping[str, Callable[[object], str]] = {
    "symbol": _symbol,
    "year": _digits(4),
    "month": _digits(2),
    "day": _digits(2),
    "hour": _digits(2),
    "start": _timestamp,
    "end": _timestamp,
}


@cache
def _text(name: str) -> str:
    if name not in QUERIES:
        raise ValueError(f"no query {name!r}: one of {', '.join(QUERIES)}")
    return files("tradelake").joinpath("sql", f"{name}.sql").read_text()


@cache
def parameters(name: str) -> frozenset[str]:
    """The parameters that query ``name`` takes."""
    return frozenset(field for _, field, _, _ in string.Formatter().parse(_text(name)) if field)


def trino_sql(name: str, **params: object) -> str:
    """Query ``name`` for Athena, with its parameters (all, and only those) as SQL literals."""
    wanted = parameters(name)
    if params.keys() != wanted:
        raise ValueError(
            f"{name} takes {', '.join(sorted(wanted)) or 'no parameters'}, "
            f"not {', '.join(sorted(params)) or 'none'}"
        )
    return _text(name).format_map({key: _LITERALS[key](value) for key, value in params.items()})


def duckdb_sql(name: str, **params: object) -> str:
    """Query ``name`` for DuckDB: ``trino_sql`` translated (see the module docstring).

    Runs on a connection from ``duckdb_lake.connect``, which defines ``DECIMAL_DIVIDE``. A query
    whose parameters are all plain strings (the symbol and partition values: the rollups run
    once per symbol and hour) is translated once, with a marker literal in place of each, and
    the checked literals are put in the markers' place: sqlglot's optimiser takes ~50 ms a
    statement, which was most of ``tradelake rollup``'s time.
    """
    trino = trino_sql(name, **params)  # checks the parameters
    if not params.keys() <= _STRING_PARAMETERS:
        return _translate(trino)
    sql = _translated(_text(name).format_map({key: _marker(key) for key in params}))
    for key, value in params.items():
        sql = sql.replace(_marker(key), _LITERALS[key](value))
    return sql


_STRING_PARAMETERS = frozenset({"symbol", "year", "month", "day", "hour"})
"""Parameters rendered as a quoted string, whose value no translation step looks into."""


def _marker(key: str) -> str:
    return f"'tradelake_parameter_{key}'"


@cache
def _translated(marked: str) -> str:
    """A query with marker literals (``_marker``) for DuckDB, every marker kept as it was."""
    sql = _translate(marked)
    lost = [m for m in re.findall(_marker("[a-z]+"), marked) if m not in sql]
    if lost:
        raise ValueError(f"translating lost the parameters {', '.join(lost)}: {marked[:200]}")
    return sql


_HOUR_KEYS = ("year", "month", "day", "hour")
"""The partition predicate's parameters besides the symbol: what ``duckdb_rollup_sql`` relaxes."""


def duckdb_rollup_sql(name: str, symbol: str, source: str) -> str:
    """Rollup ``name`` of ``symbol`` for DuckDB over every hour partition in table ``source``.

    ``duckdb_sql`` of the rollup with its hour predicate (``year = … AND … hour = …``) taken out
    by sqlglot and ``trades`` read from ``source``, a table that holds the ``trades`` rows of a
    batch of hour partitions: ``tradelake rollup`` runs each rollup once per batch, not once per
    hour. A bar never straddles hours and a trade's hour partition is its event hour, so the
    bars of each hour are those the per-hour query gives; nothing else of the SQL changes.
    """
    if name not in ROLLUPS:
        raise ValueError(f"no rollup {name!r}: one of {', '.join(ROLLUPS)}")
    if not re.fullmatch("[a-z_]+", source):
        raise ValueError(f"{source!r} is not a table name")
    return _relaxed(name, source).replace(_marker("symbol"), _symbol(symbol))


@cache
def _relaxed(name: str, source: str) -> str:
    """Rollup ``name`` for DuckDB without its hour predicate, the symbol a marker (``_marker``).

    The predicate goes before translating, so the optimiser simplifies what is left as it does
    for one hour; the table is renamed after, in the optimiser's qualified output.
    """
    import sqlglot
    from sqlglot import exp

    marked = _text(name).format_map({key: _marker(key) for key in parameters(name)})
    tree = sqlglot.parse_one(marked, read="trino")
    relaxed = []
    for condition in list(tree.find_all(exp.EQ)):
        key = condition.left.name if isinstance(condition.left, exp.Column) else ""
        if key in _HOUR_KEYS and condition.right.sql("trino") == _marker(key):
            condition.replace(exp.true())
            relaxed.append(key)
    if sorted(relaxed) != sorted(_HOUR_KEYS):
        raise ValueError(f"{name} does not filter {', '.join(_HOUR_KEYS)} once each: {relaxed}")
    translated = sqlglot.parse_one(_translated(tree.sql("trino")), read="duckdb")
    for table in translated.find_all(exp.Table):
        if table.name == "trades":
            table.set("this", exp.to_identifier(source, quoted=True))
    return translated.sql("duckdb")


def _translate(trino: str) -> str:
    """Trino SQL as DuckDB SQL: sqlglot's optimiser with the schema, then ``_divisions``."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.optimizer import optimize

    tree = sqlglot.parse_one(trino, read="trino")
    schema: dict[str, object] = {
        table: {c.name: c.type for c in columns} for table, columns in _SQL_TABLES.items()
    }
    if isinstance(tree, exp.Create):  # the view: optimise its query
        tree.set("expression", _divisions(optimize(tree.expression, schema, dialect="trino")))
    else:
        tree = _divisions(optimize(tree, schema, dialect="trino"))
    return tree.sql("duckdb", comments=False)


def _divisions(tree: exp.Expr) -> exp.Expr:
    """Rewrite Trino's typed divisions for DuckDB (module docstring); raise on an unknown type."""
    from sqlglot import exp

    for division in reversed(list(tree.find_all(exp.Div))):  # innermost first
        kind = division.type
        if kind is not None and kind.is_type(*exp.DataType.INTEGER_TYPES):
            division.replace(exp.IntDiv(this=division.left, expression=division.right))
        elif kind is not None and kind.is_type(exp.DataType.Type.DECIMAL):
            cast = division.parent
            if not (isinstance(cast, exp.Cast) and cast.to.is_type(exp.DataType.Type.DECIMAL)):
                raise ValueError(f"cast the decimal division {division.sql('trino')} to a DECIMAL")
            scale = cast.to.expressions[1].this if len(cast.to.expressions) == 2 else 0
            division.replace(
                exp.func(
                    DECIMAL_DIVIDE,
                    exp.cast(division.left, exp.DataType.Type.VARCHAR, copy=False),
                    exp.cast(division.right, exp.DataType.Type.VARCHAR, copy=False),
                    exp.Literal.number(scale),
                )
            )
        elif kind is None or not kind.is_type(*exp.DataType.REAL_TYPES):
            raise ValueError(f"cannot tell the type of the division {division.sql('trino')}")
    return tree


def divide_decimals(dividend: str, divisor: str, scale: int) -> str:
    """``dividend / divisor`` as Trino divides decimals: at ``scale``, rounded half up.

    The operands are decimal strings written with all their scale's digits (as DuckDB casts a
    DECIMAL to VARCHAR), so their scales are known. Trino's result scale is the larger one; a
    cast to another scale would round a second time in Trino, which this does not copy: it is
    an error here, not a silent difference.
    """
    (a, a_scale), (b, b_scale) = _unscaled(dividend), _unscaled(divisor)
    if scale != max(a_scale, b_scale):
        raise ValueError(
            f"{dividend} / {divisor} has scale {max(a_scale, b_scale)} in Trino, not {scale}"
        )
    if b == 0:
        raise ZeroDivisionError(f"{dividend} / {divisor}")
    quotient, remainder = divmod(abs(a) * 10 ** (scale - a_scale + b_scale), abs(b))
    quotient += 2 * remainder >= abs(b)
    unscaled = -quotient if (a < 0) != (b < 0) else quotient
    sign = "-" if unscaled < 0 else ""
    whole, fraction = divmod(abs(unscaled), 10**scale)
    return f"{sign}{whole}.{fraction:0{scale}d}" if scale else f"{sign}{whole}"


def _unscaled(text: str) -> tuple[int, int]:
    """``'-12.50'`` → ``(-1250, 2)``: the unscaled integer and the scale of a decimal string."""
    whole, _, fraction = text.partition(".")
    return int(whole + fraction), len(fraction)


def hour_params(symbol: str, hour: datetime) -> dict[str, str]:
    """The parameters of a rollup of ``symbol`` for the UTC hour holding ``hour`` (aware)."""
    if hour.tzinfo is None:
        raise ValueError(f"{hour.isoformat()} has no time zone")
    levels = hour_path(int(hour.timestamp() // 3600)).split("/")
    return {"symbol": symbol, **dict(level.split("=") for level in levels)}
