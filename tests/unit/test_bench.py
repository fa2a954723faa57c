"""The bench's arithmetic and renderers (bench/cost.py, sizing.py, render.py): no measurement.

``make bench`` runs the measurements; these tests feed the pure parts made-up results and a
small template, and check what the bill and docs/BENCHMARKS.md say about them.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> dict[str, ModuleType]:
    """The bench's modules, imported as ``make bench`` imports them (bench/ on the path)."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    return {name: importlib.import_module(name) for name in ("cost", "sizing", "render")}


def function(memory: int, timeout: int, **env: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "MemorySize": memory,
            "Timeout": timeout,
            "TracingConfig": {"Mode": "Active"},
            "Environment": {"Variables": env},
        },
    }


def schedule(expression: str, function_id: str) -> dict[str, Any]:
    return {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "ScheduleExpression": expression,
            "Targets": [{"Arn": {"Fn::GetAtt": [function_id, "Arn"]}, "Id": "x"}],
        },
    }


DEFINITION = {
    "StartAt": "Ingest",
    "States": {
        "Ingest": {"Type": "Task", "Next": "Continue?"},
        "Recover": {"Type": "Pass", "Next": "Continue?"},
        "Continue?": {"Type": "Choice", "Choices": [], "Default": "Ingest"},
    },
}


@pytest.fixture
def template(tmp_path: Path) -> Path:
    resources = {
        "IngestLambdaFunction": function(256, 900, SAFETY_MARGIN_S="45"),
        "SupervisorLambdaFunction": function(256, 60),
        "PartitionsLambdaFunction": function(256, 60),
        "RollupLambdaFunction": function(256, 900, ROLLUP_LOOKBACK_HOURS="3"),
        "S1": schedule("rate(5 minutes)", "SupervisorLambdaFunction"),
        "S2": schedule("cron(15 * * * ? *)", "RollupLambdaFunction"),
        "S3": schedule("cron(40 3 * * ? *)", "PartitionsLambdaFunction"),
        "Machine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {"DefinitionString": {"Fn::Sub": [json.dumps(DEFINITION), {}]}},
        },
        "Stream": {
            "Type": "AWS::KinesisFirehose::DeliveryStream",
            "Properties": {
                "ExtendedS3DestinationConfiguration": {
                    "BufferingHints": {"IntervalInSeconds": 300, "SizeInMBs": 128},
                    "DynamicPartitioningConfiguration": {"Enabled": True},
                    "DataFormatConversionConfiguration": {"Enabled": True},
                    "ProcessingConfiguration": {
                        "Processors": [
                            {
                                "Type": "MetadataExtraction",
                                "Parameters": [
                                    {
                                        "ParameterName": "JsonParsingEngine",
                                        "ParameterValue": "JQ-1.6",
                                    }
                                ],
                            }
                        ]
                    },
                }
            },
        },
        "Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}},
        "A1": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Period": 300}},
        "A2": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "Metrics": [{"MetricStat": {}}, {"MetricStat": {}}, {"Expression": "m1+m2"}]
            },
        },
        "Off": {
            "Type": "AWS::CloudWatch::Dashboard",
            "Condition": "HasQuickSight",
            "Properties": {},
        },
        "Board": {"Type": "AWS::CloudWatch::Dashboard", "Properties": {}},
    }
    path = tmp_path / "template.json"
    path.write_text(json.dumps({"Resources": resources}))
    return path


def test_schedules_count_their_runs_in_a_730_hour_month(bench: dict[str, ModuleType]) -> None:
    cost = bench["cost"]
    assert cost.runs_per_month("rate(5 minutes)") == 730 * 12
    assert cost.runs_per_month("rate(1 hour)") == 730
    assert cost.runs_per_month("cron(15 * * * ? *)") == 730
    assert cost.runs_per_month("cron(40 3 * * ? *)") == pytest.approx(730 / 24)
    with pytest.raises(ValueError, match="only daily or hourly"):
        cost.runs_per_month("cron(0 12 ? * MON-FRI *)")


def test_the_template_is_read_as_deployed(bench: dict[str, ModuleType], template: Path) -> None:
    stack = bench["cost"].read_template(template)
    assert stack.functions["ingest"].memory_mb == 256
    assert stack.runs_per_month == {
        "supervisor": 730 * 12,
        "rollup": 730,
        "partitions": pytest.approx(730 / 24),
    }
    assert stack.transitions_per_loop == 2  # Ingest, Continue?; Recover is off the normal path
    assert (stack.firehose_interval_s, stack.jq, stack.conversion) == (300, True, True)
    assert stack.alarm_metrics == 3  # a metric-math alarm is billed per metric it reads
    assert stack.dashboards == 1  # a conditional resource is not deployed by default


def measured(bench: dict[str, ModuleType], **changes: float) -> Any:
    values = {
        "payload_bytes_per_trade": 227.0,
        "billed_bytes_per_trade": 240.0,
        "flushes_per_trade": 1 / 300,
        "parquet_bytes_per_trade": 20.0,
        "ingest_log_bytes_per_s": 30.0,
        "rollups": 2,
    }
    return bench["cost"].Measured(**{**values, **changes})


def test_the_bill_adds_up_line_by_line(bench: dict[str, ModuleType], template: Path) -> None:
    cost = bench["cost"]
    lines = cost.model(cost.read_template(template), measured(bench), trades_per_s=5.0)
    by_item = {line.item.split(",")[0]: line for line in lines}
    ingest = by_item["ingest"]
    assert ingest.quantity == 0.25 * 730 * 3600
    assert ingest.list_usd == pytest.approx(8.76, abs=0.01)  # the "256 MB ≈ $8.8"
    steps = 730 * 3600 / (900 - 45)
    transitions = next(line for line in lines if line.service == "Step Functions")
    assert transitions.quantity == pytest.approx(2 * steps)
    checkpoints = next(line for line in lines if "checkpoints" in line.item)
    assert checkpoints.quantity == pytest.approx(5 * 730 * 3600 / 300)
    athena = next(line for line in lines if line.service == "Athena")
    queries = 730 * 3 * 2  # hourly, 3 hours looked back, 2 rollups, 1 symbol
    assert athena.quantity == pytest.approx(queries * 10 * 1024**2 / 1024**4)  # the minimum
    alarms = next(line for line in lines if line.item.startswith("alarms"))
    assert alarms.list_usd == pytest.approx(0.30)
    list_usd, free_usd = cost.totals(lines)
    assert list_usd == pytest.approx(sum(line.list_usd for line in lines))
    free_lambda = 400_000 * cost.PRICES["lambda_gb_s_arm64"]
    assert list_usd - free_usd > free_lambda  # the free tiers only ever lower the bill


def test_more_trades_cost_more_only_where_they_should(
    bench: dict[str, ModuleType], template: Path
) -> None:
    cost = bench["cost"]
    stack = cost.read_template(template)
    calm = {line.item: line.list_usd for line in cost.model(stack, measured(bench), 2.0)}
    busy = {line.item: line.list_usd for line in cost.model(stack, measured(bench), 20.0)}
    grew = {item for item in calm if busy[item] > calm[item]}
    assert any("ingestion" in item for item in grew)
    assert not any(item.startswith(("ingest,", "supervisor", "alarms")) for item in grew)


def test_a_burst_in_live_frames_costs_its_trades_and_frames(bench: dict[str, ModuleType]) -> None:
    burst = {
        "rate": 5000.0,
        "seconds": 30.0,
        "cpu_per_trade_s": 6e-6,
        "cpu_per_frame_s": 30e-6,
        "framings": [{"burst_cpu_s": 1.0}, {"burst_cpu_s": 2.4}],
    }
    live = bench["sizing"].live_burst_cpu
    assert live(burst, 2.5) == pytest.approx(5000 * 6e-6 + 2000 * 30e-6)  # 0.09 vCPU
    assert live(burst, 1000.0) == pytest.approx(2.4 / 30)  # never below a measured run


def test_the_memory_size_holds_memory_and_cpu(bench: dict[str, ModuleType]) -> None:
    size = bench["sizing"].size
    assert size(60.0, 0.01).chosen_mb == 128
    assert size(100.0, 0.01).chosen_mb == 192  # (100 + 15) × 1.25 = 144 MB of memory
    assert size(60.0, 0.1).chosen_mb == 320  # 0.15 vCPU = 265 MB of Lambda's CPU share
    assert "rounded up" in size(60.0, 0.1).reasoning()


def results(bench: dict[str, ModuleType], template: Path, **parts: Any) -> dict[str, Any]:
    workload = {"trades": 1000, "messages": 400}
    hotpath = {
        "workloads": {
            name: {
                **workload,
                "results": {"tradelake": 3e5, "naive": 2e5, "cryptofeed": 2e5, "orjson_floor": 2e6},
                "ratio_to_cryptofeed": {"tradelake": 1.5, "naive": 1.0, "cryptofeed": 1.0},
            }
            for name in ("live", "snapshot")
        },
        "cryptofeed_version": "2.4.1",
        "repeat": 5,
    }
    traffic = {
        "trades": 1000,
        "flushes": 10,
        "calls": 10,
        "records": 10,
        "payload_bytes": 227_000,
        "billed_bytes": 250_000,
    }
    packing = {"rate": 5.0, "seconds": 200, "max_age_s": 5.0}
    per_trade = {**traffic, "records": 1000, "billed_bytes": 5_120_000}
    cost = bench["cost"]
    stack = cost.read_template(template)
    raw = {
        "machine": {
            "cpu": "AMD EPYC",
            "cores": 2,
            "ram_gib": 7.7,
            "python": "3.11.7",
            "os": "Debian",
            "load_average": [1.0, 1.0, 1.0],
            "date": "2026-11-29 02:00 UTC",
        },
        "hotpath": hotpath,
        "compaction": None,
        "firehose": {
            "billing_unit": 5120,
            "max_trades": 2500,
            "workloads": [
                {"name": "steady 5/s", **packing, "packed": traffic, "per_trade": per_trade}
            ],
            "age_sweep": [
                {"name": "steady 5/s", **packing, "packed": traffic, "per_trade": per_trade},
                {
                    "name": "steady 5/s",
                    **packing,
                    "max_age_s": 60.0,
                    "packed": {**traffic, "flushes": 1, "calls": 1, "records": 2},
                    "per_trade": per_trade,
                },
            ],
        },
        "loopback": {
            "symbols": 3,
            "offered_per_s": 2700.0,
            "seconds": 30.0,
            "trades": 81000,
            "files": 12,
            "wall_s": 31.0,
            "cpu_s": 1.2,
            "max_rss_mib": 140.0,
        },
        "rollup": {
            "trades": 10_000_000,
            "files": 6048,
            "symbols": 3,
            "hours": 168,
            "partitions": 504,
            "parquet_bytes": 200_000_000,
            "wall_s": 12.5,
            "cpu_s": 20.0,
            "max_rss_mib": 400.0,
            "cores": 2,
        },
        "ingest": {
            "cold_start_cpu_s": 0.4,
            "cpu_per_wall_s": {"calm": 0.001, "burst": 0.06},
            "framings": [
                {
                    "batch_ms": 20.0,
                    "burst_frames": 1500,
                    "burst_trades": 150_000,
                    "burst_cpu_s": 1.2,
                },
                {
                    "batch_ms": 0.2,
                    "burst_frames": 30000,
                    "burst_trades": 150_000,
                    "burst_cpu_s": 1.8,
                },
            ],
            "cpu_per_trade_s": 7.8e-6,
            "cpu_per_frame_s": 21e-6,
            "firehose": {"calls": 20, "records": 300, "trades": 150_000, "bytes": 34_000_000},
            "s3_puts": 20,
            "frames": 30_100,
            "rate": 5000.0,
            "seconds": 30.0,
            "calm_rate": 5.0,
            "calm_s": 20.0,
            "wall_s": 100.0,
            "max_rss_mib": 88.0,
            "log_bytes": 3000,
            "log_lines": 6,
        },
        **parts,
    }
    lines = cost.model(stack, cost.measured_from(raw))
    return {
        **raw,
        "live_trades_per_frame": 2.5,
        "sizing": bench["sizing"].size(88.0, 0.06),
        "cost": {"stack": stack, "lines": lines, "levers": cost.levers(stack, raw)},
    }


def test_benchmarks_md_states_every_target_and_verdict(
    bench: dict[str, ModuleType], template: Path
) -> None:
    doc = bench["render"].document(results(bench, template))
    assert "| tradelake (Feed + FirehoseSink packing) | 300 k/s | 1.50× |" in doc
    assert "- live: tradelake 1.50× cryptofeed, target ≥ 1.2× — met" in doc
    assert "| steady 5/s | 1,000 | 10.00 |" in doc  # ten calls per 1,000 trades
    assert "**MISSED** / met" in doc  # calls missed, billed bytes 1.10× met
    assert "| 12.5 s | 20.0 s | 400 MiB | 2 | **MISSED** |" in doc  # the rollup over 10 s
    assert "HOOK: `bench/compaction.py --json OUT`" in doc  # not run: a marked hook
    assert "**Memory size: 192 MB.**" in doc
    assert "Why not 128 MB:" in doc
    assert "| fitted: CPU a trade / a frame | 7.8 / 21.0 µs |" in doc
    assert "serverless.yml has 256 MB: **differs from this run's choice.**" in doc
    list_usd, _ = bench["cost"].totals(results(bench, template)["cost"]["lines"])
    assert f"**${list_usd:,.2f}**" in doc
    levers = results(bench, template)["cost"]["levers"]
    (_, (measured, _)), (_, (at_192, _)), (_, (at_128, _)) = levers
    assert measured == list_usd
    cost = bench["cost"]
    month_gb_s = cost.SECONDS_PER_MONTH * cost.PRICES["lambda_gb_s_arm64"] / 1024
    assert measured - at_192 == pytest.approx((256 - 192) * month_gb_s)  # only the ingest line
    assert at_192 - at_128 == pytest.approx(64 * month_gb_s)


def test_the_console_prints_the_side_by_side_table(
    bench: dict[str, ModuleType], template: Path
) -> None:
    out = bench["render"].console(results(bench, template))
    header, *rows = out.splitlines()
    assert header.split() == ["per-frame", "path", "live", "×", "cf", "snapshot", "×", "cf"]
    assert rows[0].startswith("tradelake")
    assert rows[0].endswith("1.50×")
    assert "cryptofeed 2.4.1 Phemex handler" in rows[1]
