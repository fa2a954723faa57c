"""Firehose requests and billed bytes per 1,000 trades: the real sink against one record per trade.

The trades are a synthetic BTCUSD market (``market.market``: the simulator's tape, with the shapes
the capture sees: single fills, bursts, sweeps, identical fills in one nanosecond) in event time.
``FirehoseSink`` is built as the ingest handler builds it (its defaults) around a client that
records every PutRecordBatch, and driven the way ``Capture`` drives it: ``add`` per message,
``due``/``flush`` after every message and at least once a second (the receive timeout). The
baseline sends the same flushes as one record per trade. Ingestion is billed per record rounded
up to 5 KB, which is the whole difference.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aws_fakes import RecordingFirehose
from market import market

from tradelake.adapters.firehose_sink import FirehoseSink
from tradelake.model import INCREMENTAL, Fill, Trade
from tradelake.pack import batches, pack
from tradelake.simulator.tape import NS_PER_SECOND

BILLING_UNIT = 5 * 1024
"""Firehose bills ingestion per record rounded up to the next 5 KB (5,120 bytes assumed)."""
SYMBOL = "BTCUSD"
START_NS = 1_795_737_600_000_000_000  # 2026-11-27T00:00Z
STEADY_RATES = (2.0, 5.0, 10.0)
"""Trades per second: a quiet, a typical and a busy hour of an inverse BTC contract."""
STEADY_SECONDS = 3600
BURST_RATE, BURST_SECONDS = 5000.0, 60
RECV_TIMEOUT_NS = NS_PER_SECOND
"""``Capture`` checks ``due`` after every frame and at least this often (pings, timeouts)."""


def billed(size: int) -> int:
    """The bytes Firehose bills for one record of ``size`` bytes."""
    return max(1, math.ceil(size / BILLING_UNIT)) * BILLING_UNIT


@dataclass(frozen=True)
class Traffic:
    """What one workload cost in Firehose terms."""

    trades: int
    flushes: int
    calls: int
    records: int
    payload_bytes: int
    billed_bytes: int


@dataclass(frozen=True)
class PackingResult:
    name: str
    rate: float
    seconds: int
    max_age_s: float
    packed: Traffic
    per_trade: Traffic

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rate": self.rate,
            "seconds": self.seconds,
            "max_age_s": self.max_age_s,
            "packed": self.packed.__dict__,
            "per_trade": self.per_trade.__dict__,
        }


def messages(fills: Sequence[Fill], symbol: str) -> Iterator[tuple[int, list[Trade]]]:
    """The fills as the capture's trades, one message per nanosecond, with ``k`` and receipt."""
    seen: Counter[Fill] = Counter()
    batch: list[Trade] = []
    for seq, fill in enumerate(fills):
        if batch and fill.ts_ns != batch[0].ts_ns:
            yield batch[0].recv_ns, batch
            batch = []
        k = seen[fill]
        seen[fill] = k + 1
        recv_ns = fill.ts_ns + 3_000_000
        batch.append(Trade(symbol, *fill, k, recv_ns, seq, INCREMENTAL))
    if batch:
        yield batch[0].recv_ns, batch


def drive(fills: Sequence[Fill], max_age_s: float | None) -> tuple[RecordingFirehose, list[int]]:
    """Run the sink over ``fills`` in event time; the client and the trades of every flush."""
    now = [START_NS]
    client = RecordingFirehose()

    def clock() -> int:
        return now[0]

    sink = (
        FirehoseSink(client, "bench", clock=clock)  # as the ingest handler builds it
        if max_age_s is None
        else FirehoseSink(client, "bench", max_age_s=max_age_s, clock=clock)
    )
    flushed: list[int] = []

    def check(at: int) -> None:
        now[0] = at
        if sink.due(at):
            flushed.append(len(sink.flush()))

    tick = START_NS + RECV_TIMEOUT_NS
    for at, trades in messages(fills, SYMBOL):
        while tick < at:
            check(tick)
            tick += RECV_TIMEOUT_NS
        now[0] = at
        sink.add(trades)
        check(at)
    if sink.pending:
        flushed.append(len(sink.flush()))  # the end of a Lambda step flushes what is left
    return client, flushed


def measure(name: str, rate: float, seconds: int, max_age_s: float | None = None) -> PackingResult:
    fills = market(SYMBOL, START_NS, seconds, rate)
    client, flushed = drive(fills, max_age_s)
    sizes = [size for call in client.calls for size in call]
    packed = Traffic(
        trades=len(fills),
        flushes=len(flushed),
        calls=len(client.calls),
        records=len(sizes),
        payload_bytes=sum(sizes),
        billed_bytes=sum(billed(s) for s in sizes),
    )
    # the same flushes, one record per trade
    trades = [t for _, batch in messages(fills, SYMBOL) for t in batch]
    calls, start = 0, 0
    for n in flushed:
        records = pack(trades[start : start + n], max_trades=1)
        calls += sum(1 for _ in batches(records, lambda r: len(r.data)))
        start += n
    line_sizes = [len(r.data) for r in pack(trades, max_trades=1)]
    per_trade = Traffic(
        trades=len(fills),
        flushes=len(flushed),
        calls=calls,
        records=len(line_sizes),
        payload_bytes=sum(line_sizes),
        billed_bytes=sum(billed(s) for s in line_sizes),
    )
    age = max_age_s if max_age_s is not None else FirehoseSink(client, "x").max_age_ns / 1e9
    return PackingResult(name, rate, seconds, age, packed, per_trade)


def run() -> dict[str, Any]:
    """Every workload at the sink's defaults, and the flush age at 5 trades/s as a sweep."""
    workloads = [measure(f"steady {r:g}/s", r, STEADY_SECONDS) for r in STEADY_RATES]
    workloads.append(measure(f"burst {BURST_RATE:g}/s", BURST_RATE, BURST_SECONDS))
    sweep = [measure("steady 5/s", 5.0, STEADY_SECONDS, age) for age in (5, 30, 60, 120, 300)]
    defaults = FirehoseSink(RecordingFirehose(), "x")
    return {
        "billing_unit": BILLING_UNIT,
        "max_trades": defaults.max_trades,
        "workloads": [w.to_json() for w in workloads],
        "age_sweep": [w.to_json() for w in sweep],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
