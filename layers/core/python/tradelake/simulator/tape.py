"""The tape: the ground truth a simulator serves, per symbol its fills in ascending ``ts_ns``.

Two sources. ``synthetic_tape`` invents a realistic, deterministic market with the awkward cases
that break trade capture (bursts, taker sweeps that fill several prices in ONE nanosecond, fully
identical fills in one nanosecond). ``load_tape`` rebuilds a tape from a recording or from raw
Phemex messages by running them through the same core the capture uses (``protocol``,
``normalise``, ``cursor.Reconciler``), so a replay holds exactly the trades a capture would keep.
"""

from __future__ import annotations

import gzip
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from tradelake import protocol
from tradelake.cursor import Batch, Reconciler
from tradelake.markets import Market, instrument
from tradelake.model import BUY, FIXED_ONE, FIXED_SCALE, SELL, SNAPSHOT, Fill
from tradelake.normalise import fills

Tape = dict[str, list[Fill]]

NS_PER_SECOND = 1_000_000_000
GZIP_MAGIC = b"\x1f\x8b"

REFERENCE_PRICES: Mapping[str, float] = {
    "BTC": 60000.0,
    "ETH": 3000.0,
    "SOL": 150.0,
    "BNB": 550.0,
    "LTC": 80.0,
    "AVAX": 30.0,
    "LINK": 15.0,
    "DOT": 7.0,
    "XRP": 0.6,
    "ADA": 0.45,
    "DOGE": 0.15,
    "1INCH": 0.4,
}
"""Rough price levels, so the common symbols look familiar; other bases get a derived level."""

VOLATILITY_PER_SQRT_SECOND = 1e-4
"""About 55 % a year: a calm but visibly moving crypto market."""

# What one market event produces: (weight, (fewest, most) fills).
_KINDS: tuple[tuple[float, tuple[int, int]], ...] = (
    (0.82, (1, 1)),  # one trade
    (0.08, (3, 12)),  # a burst of rapid trades
    (0.06, (2, 6)),  # a taker sweep: several prices in ONE nanosecond
    (0.04, (2, 4)),  # identical fills in one nanosecond
)
_SINGLE, _BURST, _SWEEP, _IDENTICAL = range(4)
_KIND_WEIGHTS = [weight for weight, _ in _KINDS]
_TRADES_PER_EVENT = sum(weight * (lo + hi) / 2 for weight, (lo, hi) in _KINDS)
_BURST_GAP_S = 0.003
_LOG_SPREAD = 1.6
_LOG_MEDIAN_NOTIONAL = math.log(300.0)
_MAX_NOTIONAL = 150_000.0
"""Quote currency: 2.5 BTC at 60000."""
_LOG_MEDIAN_CONTRACTS = math.log(60.0)
_MAX_CONTRACTS = 5000


@dataclass(frozen=True, slots=True)
class _Profile:
    """How one symbol trades: its price level, tick and lot, all in fixed point."""

    price: float
    tick: int
    lot: int
    contracts: bool


def _profile(symbol: str, rng: random.Random) -> _Profile:
    """Tick and lot in the shape Phemex uses for the market type, scaled to the price level.

    BTC lands on the live values: BTCUSD tick 0.5 in whole contracts, BTCUSDT tick 0.1 and lot
    0.001, sBTCUSDT tick 0.01 and lot 0.000001. Everything is on the symbol's wire scale.
    """
    inst = instrument(symbol)
    base = symbol[1:] if inst.market is Market.SPOT else symbol
    base = base.removesuffix("USDT") if base.endswith("USDT") else base.removesuffix("USD")
    price = REFERENCE_PRICES.get(base) or 10 ** rng.uniform(-1.0, 3.0)
    digits = math.floor(math.log10(price))
    if inst.market is Market.PERPETUAL:
        grid = 10 ** (FIXED_SCALE - 8)  # decimal strings: keep to Phemex's finest (10^-8)
        tick = 10 ** max(0, FIXED_SCALE + digits - 5)
        lot = 10 ** (FIXED_SCALE - min(max(digits - 1, 0), 8))
    elif inst.market is Market.SPOT:
        grid = inst.price_factor
        tick = 10 ** max(0, FIXED_SCALE + digits - 6)
        lot = max(10 ** (FIXED_SCALE - min(max(digits + 2, 0), 8)), inst.qty_factor)
    else:
        grid = inst.price_factor
        tick = 5 * 10 ** max(0, FIXED_SCALE + digits - 5)
        lot = inst.qty_factor
    tick = -(-tick // grid) * grid
    return _Profile(price, tick, lot, inst.market is Market.INVERSE)


def synthetic_tape(
    symbols: Sequence[str],
    start_ns: int,
    duration_ns: int,
    seed: int = 0,
    rate: float = 3.0,
) -> Tape:
    """A deterministic market of ``rate`` trades per event-second per symbol (on average).

    Same arguments, same tape: each symbol draws from its own RNG seeded by ``seed`` and the
    symbol, so adding a symbol does not change the others. Trades lie in
    ``[start_ns, start_ns + duration_ns)``.
    """
    return {s: _symbol_tape(s, start_ns, start_ns + duration_ns, seed, rate) for s in symbols}


def _symbol_tape(symbol: str, start_ns: int, end_ns: int, seed: int, rate: float) -> list[Fill]:
    rng = random.Random(f"tradelake:{seed}:{symbol}")
    p = _profile(symbol, rng)
    tick_value = p.tick / FIXED_ONE
    mid = p.price
    event_gap_s = _TRADES_PER_EVENT / rate
    out: list[Fill] = []
    ts = start_ns
    while True:
        dt_s = rng.expovariate(1.0 / event_gap_s)
        ts += int(dt_s * NS_PER_SECOND) + 1
        if ts >= end_ns:
            return out
        mid *= math.exp(VOLATILITY_PER_SQRT_SECOND * math.sqrt(dt_s) * rng.gauss(0.0, 1.0))
        side = BUY if rng.random() < 0.5 else SELL
        ticks = max(1, math.ceil(mid / tick_value) if side == BUY else math.floor(mid / tick_value))
        kind = rng.choices(range(4), _KIND_WEIGHTS)[0]
        if kind == _SINGLE:
            out.append(Fill(ts, side, ticks * p.tick, _qty(rng, p, mid)))
        elif kind == _IDENTICAL:
            fill = Fill(ts, side, ticks * p.tick, _qty(rng, p, mid))
            out.extend([fill] * rng.randint(*_KINDS[_IDENTICAL][1]))
        elif kind == _SWEEP:
            step = 1 if side == BUY else -1
            for i in range(rng.randint(*_KINDS[_SWEEP][1])):
                ticks = max(1, ticks + step * min(i, 1))
                out.append(Fill(ts, side, ticks * p.tick, _qty(rng, p, mid)))
            mid = ticks * tick_value
        else:
            for _ in range(rng.randint(*_KINDS[_BURST][1])):
                if ts >= end_ns:
                    return out
                if rng.random() < 0.2:
                    side = SELL if side == BUY else BUY
                ticks = max(1, ticks + rng.choice((-1, 0, 0, 1)))
                out.append(Fill(ts, side, ticks * p.tick, _qty(rng, p, mid)))
                ts += int(rng.expovariate(1.0 / _BURST_GAP_S) * NS_PER_SECOND) + 1
            mid = ticks * tick_value


def _qty(rng: random.Random, p: _Profile, mid: float) -> int:
    """Log-normal ticket sizes: mostly small, now and then a whale up to the cap."""
    if p.contracts:
        contracts = round(math.exp(rng.gauss(_LOG_MEDIAN_CONTRACTS, _LOG_SPREAD)))
        return min(_MAX_CONTRACTS, max(1, contracts)) * p.lot
    notional = min(_MAX_NOTIONAL, math.exp(rng.gauss(_LOG_MEDIAN_NOTIONAL, _LOG_SPREAD)))
    return max(1, int(notional / mid * FIXED_ONE / p.lot)) * p.lot


def load_tape(path: str | Path) -> Tape:
    """Rebuild the tape from JSON lines, plain or gzip (told apart by the magic bytes).

    A line is either a record ``{"recv_ns": …, "frame": "<text frame>"}`` as written by
    ``tradelake capture --record``, or a raw Phemex message. Frames that are not trade messages
    (replies, pongs, garbage a faulty feed sent) are skipped, as the capture skips them; a line
    that is not JSON at all means the file is not a tape, and raises ValueError.
    """
    reconcilers: dict[str, Reconciler] = {}
    tape: Tape = {}
    for frame in _frames(Path(path)):
        try:
            msg = protocol.parse(frame)
        except protocol.MalformedFrame:
            continue
        if not isinstance(msg, protocol.TradesMessage):
            continue
        try:
            inst = instrument(msg.symbol)
        except ValueError:
            continue
        if msg.key != inst.rows_key:
            continue
        rows = msg.rows[::-1] if msg.kind == SNAPSHOT else msg.rows
        batch, _bad = fills(inst, rows)
        reconciler = reconcilers.setdefault(msg.symbol, Reconciler(msg.symbol))
        if msg.kind == SNAPSHOT:
            trades, _gaps = reconciler.reconcile([Batch(batch, 0, msg.seq, SNAPSHOT)], 0)
        else:
            trades, _gaps = reconciler.incremental(batch, 0, msg.seq)
        kept = tape.setdefault(msg.symbol, [])
        kept.extend(Fill(t.ts_ns, t.side, t.price, t.qty) for t in trades)
    return tape


def _frames(path: Path) -> Iterator[str | bytes]:
    with path.open("rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
    with gzip.open(path, "rb") if gzipped else path.open("rb") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line ({exc})") from None
            if isinstance(doc, dict) and "frame" in doc and "recv_ns" in doc:
                frame = doc["frame"]
                if isinstance(frame, str):
                    yield frame
            else:
                yield line
