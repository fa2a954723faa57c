"""The local trade sink: Firehose's buffering and partitioning, written as Parquet files.

Trades are buffered like Firehose buffers records (by count, approximate bytes and age) and a
flush writes one SNAPPY Parquet file per symbol and EVENT hour under the same keys as Firehose's
dynamic partitioning, without the partition columns in the file (Hive style). A file appears
atomically (``lake_files.stage`` then ``publish``); only then are its trades acknowledged.

Prices and quantities are already the unscaled values of ``decimal(28,10)`` (``model.py``), so
the decimal columns are built from their 16-byte two's complement form: exact, and about three
times faster than going through ``decimal.Decimal``. A value that does not fit is an error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from uuid import uuid4

import pyarrow as pa
import pyarrow.parquet as pq

from tradelake.adapters.lake_files import publish, stage
from tradelake.model import FIXED_LIMIT, Trade, trade_key
from tradelake.partitions import NS_PER_HOUR, partition_prefix
from tradelake.schema import TRADE_COLUMNS

TRADE_BYTES = 240
"""Approximate bytes of one trade as a Firehose JSON line record, for the byte limit."""

_NS_PER_MS = 1_000_000
_HIVE_TYPES = {
    "bigint": pa.int64(),
    "string": pa.string(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
}


def arrow_type(hive_type: str) -> pa.DataType:
    """The Arrow type of a Hive/Glue column type of ``schema.py``."""
    if hive_type.startswith("decimal(") and hive_type.endswith(")"):
        precision, scale = hive_type[len("decimal(") : -1].split(",")
        return pa.decimal128(int(precision), int(scale))
    return _HIVE_TYPES[hive_type]


TRADE_SCHEMA = pa.schema([pa.field(c.name, arrow_type(c.type)) for c in TRADE_COLUMNS])


def decimal_array(values: Sequence[int], dtype: pa.DataType, trades: Sequence[Trade]) -> pa.Array:
    """Fixed-point integers as a decimal128 array, exactly; ``trades`` name an overflow.

    Arrow's decimal128 is a 16-byte two's complement integer in native byte order, which is
    what ``int.to_bytes`` produces; the bound check comes first so nothing is ever truncated.
    """
    if values and (max(values) >= FIXED_LIMIT or min(values) <= -FIXED_LIMIT):
        trade, value = next(
            (t, v) for t, v in zip(trades, values, strict=True) if abs(v) >= FIXED_LIMIT
        )
        raise ValueError(
            f"trade {trade_key(trade)}: unscaled value {value} does not fit {dtype}; "
            "the lake stores prices and quantities exactly or not at all"
        )
    order = sys.byteorder
    data = b"".join([v.to_bytes(16, order, signed=True) for v in values])
    return pa.Decimal128Array.from_buffers(dtype, len(values), [None, pa.py_buffer(data)])


def trade_table(trades: Sequence[Trade]) -> pa.Table:
    """The rows of one file, in ``TRADE_COLUMNS`` order; symbol and hour live in the path."""
    _, ts_ns, side, price, qty, _, recv_ns, seq, source = zip(*trades, strict=True)
    columns = {
        "ts_ns": pa.array(ts_ns, pa.int64()),
        "ts": pa.array([t // _NS_PER_MS for t in ts_ns], TRADE_SCHEMA.field("ts").type),
        "side": pa.array(side, pa.string()),
        "price": decimal_array(price, TRADE_SCHEMA.field("price").type, trades),
        "qty": decimal_array(qty, TRADE_SCHEMA.field("qty").type, trades),
        "trade_key": pa.array([trade_key(t) for t in trades], pa.string()),
        "recv_ns": pa.array(recv_ns, pa.int64()),
        "seq": pa.array(seq, pa.int64()),
        "source": pa.array(source, pa.string()),
    }
    return pa.Table.from_arrays([columns[name] for name in TRADE_SCHEMA.names], schema=TRADE_SCHEMA)


def parquet_bytes(table: pa.Table) -> pa.Buffer:
    """The table as one SNAPPY Parquet file, like Firehose's record format conversion."""
    out = pa.BufferOutputStream()
    pq.write_table(table, out, compression="snappy")
    return out.getvalue()


class ParquetSink:
    """A ``TradeSink`` writing Parquet files under ``<lake>/trades/symbol=…/year=…/…/hour=…/``.

    ``due(now_ns)`` compares ``now_ns`` with the ``clock`` reading taken when the oldest buffered
    trade arrived, so both must come from the same clock (monotonic by default).
    """

    def __init__(
        self,
        lake: Path,
        max_trades: int = 100_000,
        max_bytes: int = 64 * 2**20,
        max_age_s: float = 60.0,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.lake = lake
        self.max_trades = max_trades
        self.max_bytes = max_bytes
        self.max_age_ns = round(max_age_s * 1e9)
        self.clock = clock
        self.files_written = 0
        self.trades_written = 0
        self.bytes_written = 0
        self._buffer: list[Trade] = []
        self._oldest_ns = 0

    def add(self, trades: Sequence[Trade], lines: bytes | None = None) -> None:
        """``lines`` (JSON, for Firehose) are of no use to Parquet."""
        if trades and not self._buffer:
            self._oldest_ns = self.clock()
        self._buffer.extend(trades)

    def due(self, now_ns: int) -> bool:
        n = len(self._buffer)
        return n > 0 and (
            n >= self.max_trades
            or n * TRADE_BYTES >= self.max_bytes
            or now_ns - self._oldest_ns >= self.max_age_ns
        )

    def flush(self) -> Sequence[Trade]:
        """Write every buffered trade and return them, in the order they were added.

        All files are staged before any is published, so a failure while writing (an overflow,
        a full disk) leaves nothing visible and keeps the buffer for a retry. If publishing fails
        half way, the retry writes the published groups again: duplicates with the same
        ``trade_key``, which every reader discards, as with Firehose's at-least-once delivery.
        """
        trades = self._buffer
        if not trades:
            return []
        groups: dict[tuple[str, int], list[Trade]] = {}
        for t in trades:
            groups.setdefault((t.symbol, t.ts_ns // NS_PER_HOUR), []).append(t)
        staged: list[tuple[Path, Path]] = []
        size = 0
        try:
            for (symbol, _), rows in groups.items():
                data = parquet_bytes(trade_table(rows))
                first = min(t.ts_ns for t in rows)
                directory = self.lake / partition_prefix(symbol, first)
                path = directory / f"{first:019d}-{uuid4().hex}.parquet"
                staged.append((stage(path, memoryview(data)), path))
                size += data.size
            for temp, path in staged:
                publish(temp, path)
        finally:
            for temp, _ in staged:
                temp.unlink(missing_ok=True)
        self._buffer = []
        self.files_written += len(staged)
        self.trades_written += len(trades)
        self.bytes_written += size
        return trades
