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
    # BTCUSD alone: one no-trades alarm and eight others. An ingest execution that ended badly
    # is told by the supervisor, a failed rollup by its on-failure destination, not by alarms:
    # an alarm added here is a line of the bill.
    assert stack.alarm_metrics == 9
    assert (stack.schedules, stack.aws_event_rules) == (3, 1)  # the supervisor's
    traced = {name for name, function in stack.functions.items() if function.traced}
    assert traced == {"partitions", "supervisor", "rollup"}, "ingest: PassThrough"
    ingest = stack.functions["ingest"]
    assert ingest.env["SAFETY_MARGIN_S"] == "45"
    assert stack.functions["rollup"].env["ROLLUP_LOOKBACK_HOURS"] == "3"
    measured = cost.Measured(227.0, 240.0, 1 / 25, 55.0, 30.0, 2)
    lines = cost.model(stack, measured)
    first = lines[0]
    assert first.quantity == ingest.memory_mb / 1024 * 730 * 3600  # the ingest Lambda, 24/7
    assert all(line.list_usd >= 0 for line in lines)
    by_service = {line.service: line for line in lines}
    metrics = next(line for line in lines if line.item == "custom metrics")
    assert metrics.quantity == cost.SYMBOLS, "TradesWritten per symbol; the lag is logged"
    (insights,) = [line for line in lines if line.item.startswith("Logs Insights")]
    assert 0 < insights.list_usd < 0.01
    assert by_service["EventBridge"].list_usd == 0
    assert by_service["SNS"].list_usd < 0.01
    xray = by_service["X-Ray"]
    assert xray.quantity == pytest.approx(sum(stack.runs_per_month.values()) + 730 * 3600 / 300)
