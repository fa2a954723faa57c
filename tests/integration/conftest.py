"""Fixtures for the integration tests that need a (moto) AWS world."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aws_world import Aws, aws_world


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with aws_world(monkeypatch) as world:
        yield world
