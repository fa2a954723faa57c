"""The fault-injection suite (``make chaos``; a short form runs in ``make test``).

``TRADELAKE_CHAOS_SCALE`` (default 1) sets how hard it runs: every scenario runs once per seed
``1..scale``, and the scale stretches market time, rounds and runs, so the short form stays
under a minute and ``make chaos`` explores more interleavings.

Each scenario adds what it injected to ``chaos.injected``; the terminal summary prints the
counts whether the tests pass or fail: one line in the short form, one per scenario as well with
``make chaos`` (or ``-v``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator

import pytest

from aws_world import Aws, aws_world
from chaos.suite import Chaos

SCALE = max(1, int(os.environ.get("TRADELAKE_CHAOS_SCALE", "1")))

_TALLY = pytest.StashKey[list[tuple[str, Counter[str]]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_TALLY] = []


@pytest.fixture(params=range(1, SCALE + 1), ids=lambda seed: f"seed{seed}")
def chaos(request: pytest.FixtureRequest) -> Iterator[Chaos]:
    """The scenario's seed and scale; what it injected is tallied at teardown, pass or fail."""
    run = Chaos(seed=request.param, scale=SCALE)
    yield run
    request.config.stash[_TALLY].append((request.node.nodeid, run.injected))


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """The moto world of the ingest handler tests (tests/aws_world.py)."""
    with aws_world(monkeypatch) as world:
        yield world


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    tally = config.stash.get(_TALLY, [])
    if not tally:
        return
    total: Counter[str] = Counter()
    for _, counts in tally:
        total.update(counts)
    if SCALE > 1 or config.get_verbosity() > 0:
        terminalreporter.section("chaos: faults injected")
        for nodeid, counts in tally:
            terminalreporter.write_line(f"{nodeid.split('::', 1)[-1]}: {_describe(counts)}")
    terminalreporter.write_line(
        f"chaos (scale {SCALE}): {len(tally)} scenario runs injected {total.total()} faults: "
        f"{_describe(total)}"
    )


def _describe(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {fault}" for fault, n in sorted(counts.items()) if n) or "none"
