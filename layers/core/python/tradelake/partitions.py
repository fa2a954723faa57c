"""Where a trade lives in the lake: partitions by symbol and EVENT hour (UTC).

The same key layout is used by the local lake and by Firehose's dynamic partitioning in S3, so
the catalog code does not care which world wrote a file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

NS_PER_HOUR = 3_600_000_000_000
TRADES_PREFIX = "trades"


@lru_cache(maxsize=4096)
def hour_path(hour_bucket: int) -> str:
    """``year=YYYY/month=MM/day=DD/hour=HH`` of an hour bucket (``ts_ns // NS_PER_HOUR``)."""
    t = datetime.fromtimestamp(hour_bucket * 3600, tz=UTC)
    return f"year={t.year:04d}/month={t.month:02d}/day={t.day:02d}/hour={t.hour:02d}"


def partition_prefix(symbol: str, ts_ns: int, table: str = TRADES_PREFIX) -> str:
    """The partition directory (relative to the lake root) holding a trade at ``ts_ns``."""
    return f"{table}/symbol={symbol}/{hour_path(ts_ns // NS_PER_HOUR)}"
