"""``tradelake rollup`` over a lake of 10 M trades: wall time and the process's peak memory.

The lake is written by the real ``ParquetSink`` (the files ``tradelake capture`` writes: SNAPPY
Parquet, Hive partitions by symbol and event hour): the stack's three default symbols, a week,
one file per symbol and hour per ``FILE_SECONDS`` of market, as Firehose's 300 s buffer
delivers them. It is built once and kept in the work directory (``BENCH_WORK``, default
``/tmp/tradelake-bench``). The rollup runs as a child process, ``python -m tradelake.cli rollup``,
so that its ``ru_maxrss`` is DuckDB's and the CLI's alone.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from market import market
from measure import run_child

from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.model import INCREMENTAL, Trade

SYMBOLS = ("BTCUSD", "BTCUSDT", "sBTCUSDT")
DAYS = 7
TRADES = 10_000_000
RATE = TRADES / (len(SYMBOLS) * DAYS * 86_400)
"""Trades a second a symbol: about 5.5."""
FILE_SECONDS = 300
START_NS = 1_795_046_400_000_000_000  # 2026-11-19T00:00Z
HOUR_NS = 3_600_000_000_000
LAKE_VERSION = "v1"


def work_dir() -> Path:
    return Path(os.environ.get("BENCH_WORK", "/tmp/tradelake-bench"))


def build_lake(lake: Path) -> dict[str, int]:
    """Write the lake (or keep it if a complete one is there); its trade and file counts."""
    done = lake / "_bench_complete"
    if done.exists():
        trades, files = (int(x) for x in done.read_text().split())
        return {"trades": trades, "files": files}
    shutil.rmtree(lake, ignore_errors=True)
    sink = ParquetSink(lake, max_trades=10**9, max_bytes=2**62, max_age_s=1e9)
    for hour in range(DAYS * 24):
        start = START_NS + hour * HOUR_NS
        for n, symbol in enumerate(SYMBOLS):
            fills = market(symbol, start, 3600, RATE, seed=hour * len(SYMBOLS) + n)
            file_end = start + FILE_SECONDS * 10**9
            batch: list[Trade] = []
            for seq, f in enumerate(fills):
                if f.ts_ns >= file_end:
                    sink.add(batch)
                    sink.flush()
                    batch = []
                    file_end += FILE_SECONDS * 10**9
                k = sum(1 for t in batch[-8:] if t[1:5] == f)  # identical fills of one ns
                batch.append(Trade(symbol, *f, k, f.ts_ns + 3_000_000, seq, INCREMENTAL))
            sink.add(batch)
            sink.flush()
    done.write_text(f"{sink.trades_written} {sink.files_written}")
    return {"trades": sink.trades_written, "files": sink.files_written}


def run() -> dict[str, Any]:
    lake = work_dir() / f"lake-10m-{LAKE_VERSION}"
    counts = build_lake(lake)
    shutil.rmtree(lake / "rollups", ignore_errors=True)  # a first rollup, not a rerun
    usage = run_child([sys.executable, "-m", "tradelake.cli", "rollup", "--lake", str(lake)])
    if usage.returncode != 0:
        raise RuntimeError(f"tradelake rollup failed:\n{usage.stderr[-3000:]}")
    parquet_bytes = sum(p.stat().st_size for p in (lake / "trades").glob("**/*.parquet"))
    return {
        **counts,
        "symbols": len(SYMBOLS),
        "hours": DAYS * 24,
        "partitions": len(SYMBOLS) * DAYS * 24,
        "parquet_bytes": parquet_bytes,
        "wall_s": usage.wall_s,
        "cpu_s": usage.cpu_s,
        "max_rss_mib": usage.max_rss_mib,
        "cores": os.cpu_count(),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
