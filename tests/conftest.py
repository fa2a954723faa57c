"""Shared test helpers: the fixture files of real Phemex messages."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["packaged"]  # the packaged template, for tests/infra and the workflow test

FIXTURES = Path(__file__).parent / "fixtures" / "phemex"


@pytest.fixture
def fixture_lines() -> list[tuple[str, int, str]]:
    """(file name, line number, text) for every line of every Phemex fixture file."""
    return [
        (path.name, number, line)
        for path in sorted(FIXTURES.glob("*.jsonl"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
    ]
