"""Lambda configuration: one typed object per function, parsed once from the environment.

Handlers build their config at cold start and pass it down; nothing below a handler reads
``os.environ``. A missing or malformed variable fails the cold start with its name, which is
where a deploy mistake should surface.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tradelake.markets import market_of


class ConfigError(ValueError):
    """An environment variable is missing or malformed."""


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, default)
    if value is None or value == "":
        raise ConfigError(f"environment variable {name} is not set")
    return value


def _symbols(env: Mapping[str, str]) -> tuple[str, ...]:
    symbols = tuple(s.strip() for s in _get(env, "TRADELAKE_SYMBOLS").split(",") if s.strip())
    for symbol in symbols:
        try:
            market_of(symbol)
        except ValueError as exc:
            raise ConfigError(f"TRADELAKE_SYMBOLS: {exc}") from None
    if not symbols:
        raise ConfigError("TRADELAKE_SYMBOLS: list at least one symbol")
    return symbols


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(_get(env, name, str(default)))
    except ValueError:
        raise ConfigError(f"environment variable {name} is not a number") from None


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = _get(env, name, str(default))
    if not (text.isdigit() and low <= int(text) <= high):
        raise ConfigError(f"environment variable {name} is not a whole number {low} to {high}")
    return int(text)


@dataclass(frozen=True, slots=True)
class IngestConfig:
    symbols: tuple[str, ...]
    phemex_url: str
    delivery_stream: str
    data_bucket: str
    cursor_key: str
    switch_parameter: str
    """SSM parameter whose value ``on``/``off`` lets an operator switch ingestion."""
    safety_margin_s: float
    """Stop capturing this long before the Lambda deadline: flush, checkpoint, return."""
    metrics_interval_s: float
    symbols_per_shard: int = 20
    """At most this many symbols per shard (one websocket); see ``tradelake.shards``."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> IngestConfig:
        return cls(
            symbols=_symbols(env),
            phemex_url=_get(env, "PHEMEX_URL", "wss://ws.phemex.com"),
            delivery_stream=_get(env, "DELIVERY_STREAM"),
            data_bucket=_get(env, "DATA_BUCKET"),
            cursor_key=_get(env, "CURSOR_KEY", "_state/cursor.json"),
            switch_parameter=_get(env, "INGEST_SWITCH_PARAMETER"),
            safety_margin_s=_float(env, "SAFETY_MARGIN_S", 45.0),
            metrics_interval_s=_float(env, "METRICS_INTERVAL_S", 60.0),
            symbols_per_shard=_int(env, "SYMBOLS_PER_SHARD", 20, 1, 20),
        )


@dataclass(frozen=True, slots=True)
class PartitionsConfig:
    glue_database: str
    trades_table: str
    gaps_table: str
    data_bucket: str
    """Listed by the daily reconcile (``tradelake.reconcile``)."""
    reconcile_days: int
    """Days (today included) the daily reconcile looks at."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> PartitionsConfig:
        return cls(
            glue_database=_get(env, "GLUE_DATABASE"),
            trades_table=_get(env, "TRADES_TABLE", "trades_stored"),
            gaps_table=_get(env, "GAPS_TABLE", "gaps"),
            data_bucket=_get(env, "DATA_BUCKET"),
            reconcile_days=_int(env, "RECONCILE_DAYS", 3, 1, 60),
        )


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    state_machine_arn: str
    data_bucket: str
    cursor_key: str
    switch_parameter: str
    symbols: tuple[str, ...] = ()
    """All the symbols; the supervisor keeps one execution per shard of them."""
    symbols_per_shard: int = 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> SupervisorConfig:
        return cls(
            state_machine_arn=_get(env, "STATE_MACHINE_ARN"),
            data_bucket=_get(env, "DATA_BUCKET"),
            cursor_key=_get(env, "CURSOR_KEY", "_state/cursor.json"),
            switch_parameter=_get(env, "INGEST_SWITCH_PARAMETER"),
            symbols=_symbols(env),
            symbols_per_shard=_int(env, "SYMBOLS_PER_SHARD", 20, 1, 20),
        )


@dataclass(frozen=True, slots=True)
class RollupConfig:
    """The rollup function's world; ``for_stage`` names a deployed stack's the way it does."""

    data_bucket: str
    glue_database: str
    trades_table: str
    """The Glue table of every stored row, whose partitions say which symbols an hour has."""
    workgroup: str
    """The Athena workgroup: engine v3, results and their encryption enforced, a scan cutoff."""
    lookback_hours: int
    """Closed hours rolled up again on every run, so that trades landing late are absorbed."""
    query_timeout_s: float
    """A query still running after this long is stopped and counted as failed."""
    concurrency: int
    """Rollup queries running at once (each its own symbol, hour and rollup)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> RollupConfig:
        return cls(
            data_bucket=_get(env, "DATA_BUCKET"),
            glue_database=_get(env, "GLUE_DATABASE"),
            trades_table=_get(env, "TRADES_TABLE", "trades_stored"),
            workgroup=_get(env, "ATHENA_WORKGROUP"),
            lookback_hours=_int(env, "ROLLUP_LOOKBACK_HOURS", 3, 1, 48),
            query_timeout_s=_float(env, "ATHENA_QUERY_TIMEOUT_S", 300.0),
            concurrency=_int(env, "ROLLUP_CONCURRENCY", 4, 1, 20),
        )

    @classmethod
    def for_stage(cls, stage: str, account: str, region: str) -> RollupConfig:
        """The names serverless.yml gives stage ``stage``'s resources (for ``tradelake backfill``).

        Bucket ``tradelake-<stage>-<account>-<region>``, Glue database ``tradelake_<stage>`` with
        every ``-`` as ``_``, workgroup ``tradelake-<stage>``; the rest are the defaults.
        """
        return cls.from_env(
            {
                "DATA_BUCKET": f"tradelake-{stage}-{account}-{region}",
                "GLUE_DATABASE": f"tradelake_{stage}".replace("-", "_"),
                "ATHENA_WORKGROUP": f"tradelake-{stage}",
            }
        )
