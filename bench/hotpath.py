"""The capture hot path against cryptofeed, a naive baseline and an orjson floor (issue 10).

Every implementation gets the same frames, in one run, interleaved repeat by repeat (so the
ratios hold on a busy machine even when the absolute numbers do not):

- ``tradelake``: what the capture does per frame (``Feed.receive``: parse, exact normalise,
  dedup and reconcile) and per flush (``FirehoseSink`` packing 500 trades to a record and
  building the PutRecordBatch calls, against a Firehose that acknowledges everything);
- ``naive``: stdlib ``json``, exact ``Decimal`` scaling, one JSON record per trade, no dedup;
- ``cryptofeed``: cryptofeed 2.4.1's ``Phemex.message_handler`` with a no-op trade callback, in
  its own venv (bench/cryptofeed-venv.sh) through bench/cryptofeed_phemex.py. It reads rows under
  ``trades`` only: a USDT-perpetual frame (rows under ``trades_p``) is an "Invalid message type"
  warning to it and yields nothing, yet its rows count in its trades/s like everyone's;
- ``orjson_floor``: ``orjson.loads`` and touching each row: no implementation parsing with
  orjson can beat it.

Workloads, built from the real messages in tests/fixtures/phemex/ (see SOURCES.md there for
their origin): every row's side, price and quantity, and the spacing of its timestamp from the
row before, come from a fixture message of the same symbol, cycled; timestamps are laid anew so
that each symbol's time moves forward, and frames are written as Phemex writes them.

- ``live``: one connection; a reply and a one-row snapshot per symbol, then incremental
  messages of 1-4 rows, the three markets in turn;
- ``snapshot``: a reconnect after another: per connection, a reply and a snapshot per symbol
  (as long as the fixtures' snapshots of that market: up to 1,000 rows, newest first), each
  reaching two rows back into the previous one.

``trades`` is the rows of all trade frames, the unit of every trades/s. ``--profile WORKLOAD``
prints a cProfile of the tradelake implementation instead.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import logging
import os
import platform
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import cycle, pairwise
from pathlib import Path
from typing import Any

import orjson

from tradelake.adapters.firehose_sink import FirehoseSink
from tradelake.cursor import Cursor
from tradelake.feed import Feed
from tradelake.markets import Instrument, Market, instrument

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "phemex"
CRYPTOFEED_VERSION = "2.4.1"
CRYPTOFEED_VENV = ROOT / ".venv-bench-cryptofeed"
CRYPTOFEED_RUNNER = Path(__file__).resolve().parent / "cryptofeed_phemex.py"
MARKETS = (Market.INVERSE, Market.PERPETUAL, Market.SPOT)
MAX_DELTA_NS = 60 * 10**9
"""Fixture rows of one symbol may be years apart (doc samples): spacing is capped at a minute."""
LAG_NS = 2_000_000
"""A frame is received this long after its newest row."""

Frame = tuple[str, int, float]
"""A frame as the capture gets it: text, receipt wall time (ns), receipt monotonic time (s)."""


@dataclass
class Workload:
    name: str
    instruments: dict[str, Instrument]
    connections: list[list[Frame]] = field(default_factory=list)
    """Frames per connection: each starts with ``Feed.connect`` (request ids 1, 2, ... on)."""
    trades: int = 0
    messages: int = 0

    def frames(self) -> Iterator[Frame]:
        for connection in self.connections:
            yield from connection


# --- workloads -----------------------------------------------------------------------------------


def fixture_rows() -> dict[str, list[tuple[int, list[Any]]]]:
    """Per symbol: (spacing from the row before in ns, row) of every fixture row, oldest first."""
    rows: dict[str, list[list[Any]]] = {}
    for name in ("trade_inverse", "trade_perp", "trade_spot"):
        for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines():
            msg = json.loads(line)
            rows.setdefault(msg["symbol"], []).extend(msg.get("trades", msg.get("trades_p")))
    spaced: dict[str, list[tuple[int, list[Any]]]] = {}
    for symbol, found in rows.items():
        found.sort(key=lambda r: r[0])
        deltas = [1_000_000] + [min(b[0] - a[0], MAX_DELTA_NS) for a, b in pairwise(found)]
        spaced[symbol] = [(d, [None, *r[1:]]) for d, r in zip(deltas, found, strict=True)]
    return spaced


def snapshot_sizes() -> dict[Market, list[int]]:
    """The row counts of the fixtures' snapshots, per market (1,000 for a busy symbol)."""
    sizes: dict[Market, list[int]] = {}
    for name in ("trade_inverse", "trade_perp", "trade_spot"):
        for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines():
            msg = json.loads(line)
            if msg["type"] == "snapshot":
                market = instrument(msg["symbol"]).market
                sizes.setdefault(market, []).append(len(msg.get("trades", msg.get("trades_p"))))
    return sizes


class _Tape:
    """Each symbol's next rows: fixture values, timestamps moving forward from ``start_ns``."""

    def __init__(self, start_ns: int) -> None:
        self.pools = {s: cycle(rows) for s, rows in fixture_rows().items()}
        self.clock = dict.fromkeys(self.pools, start_ns)
        self.last: dict[str, list[list[Any]]] = {s: [] for s in self.pools}

    def take(self, symbol: str, n: int) -> list[list[Any]]:
        """``n`` new rows of ``symbol``, oldest first; a message never starts inside an ns."""
        pool, ts = self.pools[symbol], self.clock[symbol]
        out = []
        for i in range(n):
            delta, row = next(pool)
            ts += max(delta, 0 if i else 1_000)
            out.append([ts, *row[1:]])
        self.clock[symbol] = ts
        self.last[symbol] = (self.last[symbol] + out)[-2:]
        return out


def _frame(symbol: str, market: Market, kind: str, rows: list[list[Any]], seq: int) -> str:
    key = "trades_p" if market is Market.PERPETUAL else "trades"
    msg = {"sequence": seq, "symbol": symbol, key: rows, "type": kind}
    return json.dumps(msg, separators=(",", ":"))


def _receipt(rows: list[list[Any]]) -> tuple[int, float]:
    recv_ns = max(r[0] for r in rows) + LAG_NS
    return recv_ns, recv_ns / 1e9


def _reply(request_id: int) -> str:
    return f'{{"error":null,"id":{request_id},"result":{{"status":"success"}}}}'


def _replies(first_id: int, n: int, at_ns: int) -> list[Frame]:
    """The replies to one connection's ``n`` subscribes, in the order ``Feed.connect`` sends."""
    return [(_reply(first_id + i), at_ns, at_ns / 1e9) for i in range(n)]


def build_live(trades: int, seed: int = 10) -> Workload:
    rng = random.Random(seed)
    tape = _Tape(start_ns=1_700_000_000 * 10**9)
    symbols = sorted(tape.pools)
    work = Workload("live", {s: instrument(s) for s in symbols})
    by_market = {m: [s for s in symbols if work.instruments[s].market is m] for m in MARKETS}
    frames = _replies(1, len(symbols), tape.clock[symbols[0]])
    seq = 1
    for symbol in symbols:  # the snapshots that make each subscription live
        rows = tape.take(symbol, 1)
        market = work.instruments[symbol].market
        frames.append((_frame(symbol, market, "snapshot", rows, seq), *_receipt(rows)))
        work.trades, work.messages, seq = work.trades + 1, work.messages + 1, seq + 1
    markets = cycle(MARKETS)
    while work.trades < trades:
        market = next(markets)
        symbol = rng.choice(by_market[market])
        rows = tape.take(symbol, rng.randint(1, 4))
        frames.append((_frame(symbol, market, "incremental", rows, seq), *_receipt(rows)))
        work.trades, work.messages, seq = work.trades + len(rows), work.messages + 1, seq + 1
    work.connections.append(frames)
    return work


def build_snapshot(trades: int, seed: int = 10) -> Workload:
    rng = random.Random(seed)
    tape = _Tape(start_ns=1_700_000_000 * 10**9)
    symbols = sorted(tape.pools)
    work = Workload("snapshot", {s: instrument(s) for s in symbols})
    sizes = snapshot_sizes()
    seq, request_id = 1, 1
    while work.trades < trades:
        at_ns = max(tape.clock.values())
        frames = _replies(request_id, len(symbols), at_ns)
        request_id += len(symbols)
        for symbol in symbols:
            market = work.instruments[symbol].market
            overlap = tape.last[symbol]
            rows = overlap + tape.take(symbol, rng.choice(sizes[market]))
            rows.reverse()  # newest first, as Phemex sends a snapshot
            frames.append((_frame(symbol, market, "snapshot", rows, seq), *_receipt(rows)))
            work.trades, work.messages, seq = work.trades + len(rows), work.messages + 1, seq + 1
        work.connections.append(frames)
    return work


# --- the implementations -------------------------------------------------------------------------


class AcceptingFirehose:
    """A Firehose that acknowledges every record: the sink's packing and batching still run."""

    def __init__(self) -> None:
        self.records = 0

    def put_record_batch(self, **kwargs: Any) -> Mapping[str, Any]:
        n = len(kwargs["Records"])
        self.records += n
        return {"FailedPutCount": 0, "RequestResponses": [{"RecordId": "r"}] * n}


def run_tradelake(work: Workload) -> dict[str, int]:
    """What ``Capture`` does with each frame, without the socket: feed, gaps, sink, flushes.

    A flush is ``Capture._flush`` less the cursor's upload: the sink packs and sends, the
    cursor advances by what was acknowledged, and the written trades are counted per symbol.
    """
    cursor = Cursor()
    feed = Feed(work.instruments, cursor)
    firehose = AcceptingFirehose()
    sink = FirehoseSink(firehose, "bench", clock=lambda: 0)
    written: Counter[str] = Counter()

    def flush() -> None:
        acknowledged = sink.flush()
        written.update(cursor.advance(acknowledged))

    gaps = 0
    for connection in work.connections:
        feed.connect(connection[0][2])
        for frame, recv_ns, now in connection:
            out = feed.receive(frame, recv_ns, now)
            if out.gaps:
                gaps += len(out.gaps)
            if out.trades:
                sink.add(out.trades, out.lines)
            if sink.due(0):
                flush()
    flush()
    assert sum(written.values()) == sink.trades_sent
    return {"trades": sink.trades_sent, "records": firehose.records, "gaps": gaps}


def run_naive(work: Workload) -> dict[str, int]:
    """The straightforward way: stdlib json, exact Decimal, one Firehose record per trade."""
    scales = {
        s: (Decimal(1).scaleb(-(i.price_scale or 0)), Decimal(1).scaleb(-(i.qty_scale or 0)))
        for s, i in work.instruments.items()
    }
    batch: list[dict[str, bytes]] = []
    records = 0
    for frame, recv_ns, _ in work.frames():
        msg = json.loads(frame)
        rows = msg.get("trades", msg.get("trades_p"))
        if rows is None:
            continue
        symbol, seq, source = msg["symbol"], msg["sequence"], msg["type"]
        price_unit, qty_unit = scales[symbol]
        for ts, side, price, qty in rows:
            line = {
                "symbol": symbol,
                "ts_ns": ts,
                "side": side.lower(),
                "price": str(Decimal(price) * price_unit),
                "qty": str(Decimal(qty) * qty_unit),
                "recv_ns": recv_ns,
                "seq": seq,
                "source": source,
            }
            batch.append({"Data": (json.dumps(line) + "\n").encode()})
            if len(batch) == 500:
                records += len(batch)
                batch = []
    return {"trades": records + len(batch), "records": records + len(batch)}


def run_orjson_floor(work: Workload) -> dict[str, int]:
    """Parse each frame with orjson and touch every row: the floor of any orjson parser."""
    loads = orjson.loads
    n = 0
    for frame, _, _ in work.frames():
        msg = loads(frame)
        rows = msg.get("trades") or msg.get("trades_p")
        if rows:
            for row in rows:
                n += row[0] > 0
    return {"trades": n}


def cryptofeed_python() -> Path | None:
    python = CRYPTOFEED_VENV / "bin" / "python"
    stamp = CRYPTOFEED_VENV / f".cryptofeed-{CRYPTOFEED_VERSION}"
    return python if python.exists() and stamp.exists() else None


def workload_file(work: Workload, directory: Path) -> Path:
    path = directory / f"{work.name}.tsv"
    with path.open("w", encoding="ascii") as f:
        for frame, recv_ns, _ in work.frames():
            f.write(f"{recv_ns}\t{frame}\n")
    return path


def run_cryptofeed(python: Path, path: Path, work: Workload) -> tuple[float, dict[str, int]]:
    markets = json.dumps({s: i.market.value for s, i in work.instruments.items()})
    result = subprocess.run(
        [str(python), str(CRYPTOFEED_RUNNER), str(path), "--products", markets],
        check=True,
        capture_output=True,
        text=True,
    )
    out = json.loads(result.stdout)
    return out["seconds"], {"trades": out["trades"]}


# --- the run -------------------------------------------------------------------------------------


def timed(
    run: Callable[[Workload], dict[str, int]], work: Workload
) -> tuple[float, dict[str, int]]:
    start = time.process_time()
    out = run(work)
    return time.process_time() - start, out


def measure(work: Workload, repeat: int, python: Path | None, tmp: Path) -> dict[str, Any]:
    impls: dict[str, Callable[[], tuple[float, dict[str, int]]]] = {
        "tradelake": lambda: timed(run_tradelake, work),
        "naive": lambda: timed(run_naive, work),
        "orjson_floor": lambda: timed(run_orjson_floor, work),
    }
    if python is not None:
        path = workload_file(work, tmp)
        impls["cryptofeed"] = lambda: run_cryptofeed(python, path, work)
    runs: dict[str, list[float]] = {name: [] for name in impls}
    outputs: dict[str, dict[str, int]] = {}
    for i in range(repeat):
        for name, run in impls.items():
            seconds, outputs[name] = run()
            runs[name].append(seconds)
            print(f"  {work.name} {i + 1}/{repeat} {name}: {seconds:.3f} s", file=sys.stderr)
    median = {name: statistics.median(times) for name, times in runs.items()}
    results: dict[str, float | None] = {
        name: round(work.trades / median[name]) if name in median else None
        for name in ("tradelake", "naive", "cryptofeed", "orjson_floor")
    }
    return {
        "trades": work.trades,
        "messages": work.messages,
        "results": results,
        "ratio_to_cryptofeed": {
            name: round(tps / results["cryptofeed"], 3)
            for name, tps in results.items()
            if tps is not None and results["cryptofeed"]
        },
        "seconds": {name: [round(t, 4) for t in times] for name, times in runs.items()},
        "outputs": outputs,
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "orjson": orjson.__version__,
    }


def profile(work: Workload) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(run_tradelake, work)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trades", type=int, default=1_000_000, help="per workload")
    parser.add_argument("--repeat", type=int, default=5, help="runs per implementation (median)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--profile", choices=("live", "snapshot"), help="cProfile tradelake")
    parser.add_argument(
        "--no-cryptofeed", action="store_true", help="skip it (no venv needed; results null)"
    )
    args = parser.parse_args(argv)
    builders = {"live": build_live, "snapshot": build_snapshot}
    logging.basicConfig(level=logging.ERROR)  # the feed's gap warnings: one per symbol
    if args.profile:
        work = builders[args.profile](args.trades)
        gc.freeze()
        profile(work)
        return 0
    python = None if args.no_cryptofeed else cryptofeed_python()
    if python is None and not args.no_cryptofeed:
        print(
            f"hotpath: no cryptofeed venv at {CRYPTOFEED_VENV}: run bench/cryptofeed-venv.sh "
            "(or pass --no-cryptofeed)",
            file=sys.stderr,
        )
        return 2
    report: dict[str, Any] = {"machine": machine(), "workloads": {}}
    with tempfile.TemporaryDirectory(prefix="tradelake-bench-") as tmp:
        for name, build in builders.items():
            work = build(args.trades)
            gc.freeze()  # the frames are the input, not the heap a capture's collector scans
            report["workloads"][name] = measure(work, args.repeat, python, Path(tmp))
    report["cryptofeed_version"] = CRYPTOFEED_VERSION if python is not None else None
    report["repeat"] = args.repeat
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
