"""The bench's market: ``simulator.synthetic_tape`` at any rate, bursts included.

``synthetic_tape`` spaces the trades of a burst 3 ms apart, so it tops out near 1,000 trades a
second whatever rate it is asked for. A faster market is a calm one squeezed in time: the tape of
``rate / BASE_RATE`` times as long at ``BASE_RATE``, its timestamps divided down. Order, the
shapes (sweeps, identical fills in one nanosecond) and the prices stay those of the real tape.
"""

from __future__ import annotations

from tradelake.model import Fill
from tradelake.simulator.tape import NS_PER_SECOND, synthetic_tape

BASE_RATE = 5.0
"""Up to this rate the tape is used as it is; above, it is squeezed."""


def market(symbol: str, start_ns: int, seconds: float, rate: float, seed: int = 11) -> list[Fill]:
    """About ``rate`` trades a second of ``symbol`` in ``[start_ns, start_ns + seconds)``."""
    factor = max(1.0, rate / BASE_RATE)
    span_ns = int(seconds * factor * NS_PER_SECOND)
    fills = synthetic_tape([symbol], start_ns, span_ns, seed, min(rate, BASE_RATE))[symbol]
    if factor == 1.0:
        return fills
    return [f._replace(ts_ns=start_ns + int((f.ts_ns - start_ns) / factor)) for f in fills]
