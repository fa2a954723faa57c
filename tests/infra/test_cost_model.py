"""bench/cost.py reads the settings the bill depends on from the real packaged template.

If a schedule, the workflow's loop or the Firehose options change shape, the cost model must
still find them (or fail here), not quietly bill a month without them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from packaged import TEMPLATE

ROOT = Path(__file__).resolve().parents[2]


def test_the_cost_model_finds_every_setting_it_bills(
    packaged: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    cost = importlib.import_module("cost")
    stack = cost.read_template(packaged / TEMPLATE.name)
    assert set(stack.functions) == {"ingest", "partitions", "supervisor", "rollup"}
    assert stack.runs_per_month["supervisor"] == 730 * 12  # every 5 minutes
    assert stack.runs_per_month["rollup"] == 730  # hourly
    assert stack.runs_per_month["partitions"] == pytest.approx(730 / 24)  # the daily reconcile
    assert stack.transitions_per_loop == 2  # Ingest, Continue?
    assert stack.firehose_interval_s == 300
    assert (stack.dynamic_partitioning, stack.jq, stack.conversion) == (True, True, True)
    assert stack.log_retention_days
    assert stack.alarm_metrics >= 2
    ingest = stack.functions["ingest"]
    assert ingest.env["SAFETY_MARGIN_S"] == "45"
    assert stack.functions["rollup"].env["ROLLUP_LOOKBACK_HOURS"] == "3"
    measured = cost.Measured(227.0, 240.0, 1 / 25, 55.0, 30.0, 2)
    lines = cost.model(stack, measured)
    first = lines[0]
    assert first.quantity == ingest.memory_mb / 1024 * 730 * 3600  # the ingest Lambda, 24/7
    assert all(line.list_usd >= 0 for line in lines)
