"""Capped exponential backoff with full jitter, for every retry and reconnect in tradelake.

Full jitter (a uniform wait between zero and the capped exponential) spreads retries out, so a
fleet that failed together does not come back together (AWS Architecture Blog, "Exponential
Backoff And Jitter").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before retry ``retry`` (0-based); ``attempts`` counts the first try."""

    attempts: int = 6
    base_s: float = 0.1
    cap_s: float = 5.0

    def delay(self, retry: int, rng: Callable[[], float]) -> float:
        return rng() * min(self.cap_s, self.base_s * 2.0**retry)
