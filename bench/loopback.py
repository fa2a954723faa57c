"""End to end over loopback: ``tradelake simulate`` → ``tradelake capture`` → a local lake.

Two processes, as a user runs them: the bundled simulator (three symbols, market time sped up
``COMPRESSION`` times, so it offers about ``OFFERED`` trades a second in its 20 ms frames) and
the capture for ``SECONDS``. Throughput is the trades in the lake's Parquet files per wall second
of the capture; the capture's peak RSS and CPU time come from ``wait4``. CPU seconds per trade
also give the ceiling of one core, whatever the simulator offers.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from measure import Background, free_port, run_child

SYMBOLS = "BTCUSD,BTCUSDT,sBTCUSDT"
RATE = 3.0
"""Market trades a second a symbol (``tradelake simulate``'s default)."""
COMPRESSION = 300.0
OFFERED = 3 * RATE * COMPRESSION
SECONDS = 30.0


def cli(*args: str) -> list[str]:
    return [sys.executable, "-u", "-m", "tradelake.cli", *args]


def run() -> dict[str, Any]:
    port = free_port()
    hours = SECONDS * COMPRESSION / 3600 * 1.5
    server = Background(
        cli(
            "simulate",
            "--port",
            str(port),
            "--symbols",
            SYMBOLS,
            "--rate",
            str(RATE),
            "--compression",
            str(COMPRESSION),
            "--hours",
            f"{hours:.3f}",
        ),
        stream="stderr",  # it announces its URL there once it listens
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lake = Path(tmp) / "lake"
            usage = run_child(
                cli(
                    "capture",
                    "--url",
                    f"ws://127.0.0.1:{port}",
                    "--symbols",
                    SYMBOLS,
                    "--lake",
                    str(lake),
                    "--duration",
                    str(SECONDS),
                    "--replay",
                )
            )
            if usage.returncode != 0:
                raise RuntimeError(f"tradelake capture failed:\n{usage.stderr[-3000:]}")
            files = list((lake / "trades").glob("**/*.parquet"))
            trades = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    finally:
        server.stop()
    return {
        "symbols": SYMBOLS.count(",") + 1,
        "offered_per_s": OFFERED,
        "seconds": SECONDS,
        "trades": trades,
        "files": len(files),
        "wall_s": usage.wall_s,
        "cpu_s": usage.cpu_s,
        "max_rss_mib": usage.max_rss_mib,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
