"""The ingest function's memory size: the smallest that holds its memory AND its CPU.

Lambda gives CPU in proportion to memory: one vCPU at 1,769 MB, so 128 MB is ~0.072 vCPU and
256 MB ~0.145. The ingest function runs 24/7, so its size is most of the bill, and it must
keep up with a burst: its CPU seconds per wall second at the burst must fit the share.

- memory: the handler's measured peak RSS (``ingest_burst``: a whole Python process with boto3,
  Powertools and the capture; no X-Ray SDK, the handler has no tracer) plus
  ``RUNTIME_ALLOWANCE_MIB`` for what Lambda counts beyond it (the runtime interface client, the
  sandbox), times ``MEMORY_HEADROOM`` (a reconnect may hold up to ``FeedConfig.max_held_fills``
  fills, the sink up to its ``max_trades``);
- CPU: the CPU seconds per wall second at the burst in live-shaped frames (``live_burst_cpu``),
  times ``CPU_HEADROOM`` (this is not a Graviton core, and the bench's machine is shared), as a
  share of 1,769 MB;
- the larger of the two, rounded up to ``STEP_MB``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MB_PER_VCPU = 1769
RUNTIME_ALLOWANCE_MIB = 15.0
MEMORY_HEADROOM = 1.25
CPU_HEADROOM = 1.5
STEP_MB = 64
SMALLEST_MB = 128


@dataclass(frozen=True)
class Sizing:
    peak_rss_mib: float
    burst_cpu_per_s: float
    memory_need_mb: float
    cpu_need_mb: float
    chosen_mb: int

    def vcpu(self, memory_mb: int) -> float:
        return memory_mb / MB_PER_VCPU

    def reasoning(self) -> str:
        """The choice in one paragraph, for BENCHMARKS.md and serverless.yml."""
        mb = self.chosen_mb
        return (
            f"peak RSS {self.peak_rss_mib:.0f} MiB + {RUNTIME_ALLOWANCE_MIB:.0f} MiB runtime, "
            f"×{MEMORY_HEADROOM} headroom = {self.memory_need_mb:.0f} MB; CPU at the burst "
            f"{self.burst_cpu_per_s:.3f} vCPU ×{CPU_HEADROOM} = "
            f"{self.burst_cpu_per_s * CPU_HEADROOM:.3f} vCPU = {self.cpu_need_mb:.0f} MB of "
            f"Lambda's share (1 vCPU at {MB_PER_VCPU} MB); the larger, rounded up to "
            f"{STEP_MB} MB: {mb} MB ({self.vcpu(mb):.3f} vCPU)"
        )


LIVE_TRADES_PER_FRAME = 2.5
"""Phemex's live incrementals carry 1-4 trades (the hot path's live workload), when the bench's
own hot path results do not say."""


def live_burst_cpu(burst: Mapping[str, Any], trades_per_frame: float) -> float:
    """vCPU the measured burst would take in frames of ``trades_per_frame`` trades, from the
    per-trade and per-frame costs ``ingest_burst`` fitted; never below what was measured."""
    rate = float(burst["rate"])
    predicted = rate * burst["cpu_per_trade_s"] + rate / trades_per_frame * burst["cpu_per_frame_s"]
    measured = [f["burst_cpu_s"] / burst["seconds"] for f in burst["framings"]]
    return float(max(predicted, *measured))


def size(peak_rss_mib: float, burst_cpu_per_s: float) -> Sizing:
    memory_need = (peak_rss_mib + RUNTIME_ALLOWANCE_MIB) * MEMORY_HEADROOM
    cpu_need = burst_cpu_per_s * CPU_HEADROOM * MB_PER_VCPU
    chosen = max(SMALLEST_MB, math.ceil(max(memory_need, cpu_need) / STEP_MB) * STEP_MB)
    return Sizing(peak_rss_mib, burst_cpu_per_s, memory_need, cpu_need, chosen)
