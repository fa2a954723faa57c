"""``oncall.stage_problems``: the health of a deployed stage, judged from its facts alone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tradelake.model import Gap
from tradelake.oncall import (
    FIREHOSE_BUFFER_NS,
    NS_PER_HOUR,
    NS_PER_MINUTE,
    PARTITION_GRACE_NS,
    Execution,
    StageFacts,
    StoredFile,
    stage_problems,
)

NOW = 1_795_737_600_000_000_000
STALE = 15 * NS_PER_MINUTE
HEALTHY = StageFacts(
    stage="prod",
    region="eu-west-1",
    bucket="b",
    switch_parameter="/tradelake/prod/ingest",
    switch="on",
    shards=(("BTCUSD", "BTCUSDT"), ("sBTCUSDT",)),
    running=(Execution("ingest-0-7", 0, NOW), Execution("ingest-1-2", 1, NOW)),
    cursor_ns=dict.fromkeys(("BTCUSD", "BTCUSDT", "sBTCUSDT"), NOW - NS_PER_MINUTE),
    newest_file={
        s: StoredFile(f"trades/symbol={s}/f", NOW) for s in ("BTCUSD", "BTCUSDT", "sBTCUSDT")
    },
    window_days=2,
    partitions_found=3,
    partitions_missing=(),
    gaps=(),
    alarms=(),
)


def test_the_healthy_stage_has_no_problem() -> None:
    assert stage_problems(HEALTHY, NOW, STALE) == ()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"switch": None}, "the switch /tradelake/prod/ingest does not exist (redeploy the stage)"),
        ({"switch": "maybe"}, "the switch /tradelake/prod/ingest is 'maybe', not on/off"),
        (
            {"running": (Execution("ingest-0-7", 0, NOW), Execution("by-hand", None, NOW))},
            "shard 1 (sBTCUSDT): no ingest execution running",
        ),
        (
            {"cursor_ns": {"BTCUSD": NOW, "BTCUSDT": NOW}},
            "sBTCUSDT: no cursor checkpoint holds it: nothing captured yet",
        ),
        (
            {"newest_file": {s: StoredFile("k", NOW) for s in ("BTCUSD", "sBTCUSDT")}},
            "BTCUSDT: no file under trades/ in the last 2 days",
        ),
        (
            {
                "newest_file": {
                    **HEALTHY.newest_file,
                    "BTCUSD": StoredFile("k", NOW - STALE - FIREHOSE_BUFFER_NS - 1),
                }
            },
            "BTCUSD: newest file is 20 min old (stale after 20 min)",
        ),
        (
            {"partitions_missing": (StoredFile("s3://b/trades/x/", NOW - PARTITION_GRACE_NS),)},
            "partition s3://b/trades/x/ is in S3 but not in Glue",
        ),
    ],
)
def test_each_problem_is_one_line(change: dict[str, object], problem: str) -> None:
    [found] = stage_problems(replace(HEALTHY, **change), NOW, STALE)
    assert found.startswith(problem), found


def test_a_young_missing_partition_is_still_being_registered() -> None:
    young = StoredFile("s3://b/trades/x/", NOW - PARTITION_GRACE_NS + 1)
    assert stage_problems(replace(HEALTHY, partitions_missing=(young,)), NOW, STALE) == ()


def test_a_gap_counts_for_an_hour_and_a_stale_symbol_after_stale_after() -> None:
    old = Gap("BTCUSD", 1, 2, NOW - NS_PER_HOUR, "stall")
    assert stage_problems(replace(HEALTHY, gaps=(old,)), NOW, STALE) == ()
    cursor = {**HEALTHY.cursor_ns, "BTCUSD": NOW - STALE}
    assert stage_problems(replace(HEALTHY, cursor_ns=cursor), NOW, STALE) == ()
    cursor["BTCUSD"] -= 1
    [lag] = stage_problems(replace(HEALTHY, cursor_ns=cursor), NOW, STALE)
    assert lag.startswith("BTCUSD: lag 15 min")
