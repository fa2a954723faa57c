"""The partitioning query of the packaged template, run by the real engine: jq 1.6.

Firehose evaluates ``MetadataExtractionQuery`` with ``JsonParsingEngine: JQ-1.6`` on every JSON
object the JSON deaggregation splits out of a record. Debian's ``jq`` package is exactly jq 1.6;
``make test`` installs it when missing and running as root (``make system-deps``), otherwise the
engine tests skip and say so. The query is taken from the packaged template, never copied.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from datetime import UTC, datetime
from functools import cache

import pytest

from tradelake.model import Trade
from tradelake.pack import pack

JQ_VERSION = "jq-1.6"
NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
KEYS = ("year", "month", "day", "hour")


def _instant(text: str) -> int:
    """Epoch nanoseconds of an ISO date-time in UTC."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * NS_PER_S


# Each boundary B is tried at B - 1 ns, B - 1 ms, B and B + 1 ms: the last nanosecond and
# millisecond of one hour and the first of the next.
BOUNDARIES = {
    "hour": _instant("2026-11-27T13:00:00"),
    "day": _instant("2026-11-28T00:00:00"),
    "month": _instant("2026-12-01T00:00:00"),
    "year": _instant("2027-01-01T00:00:00"),
    "leap day starts": _instant("2028-02-29T00:00:00"),
    "leap day ends": _instant("2028-03-01T00:00:00"),
    "leap day 2000": _instant("2000-03-01T00:00:00"),
    "epoch": 0,
}
OFFSETS_NS = (-NS_PER_MS, -1, 0, 1, NS_PER_MS, NS_PER_S - 1)


def _query(template) -> str:
    _, stream = template.one("AWS::KinesisFirehose::DeliveryStream")
    destination = stream["Properties"]["ExtendedS3DestinationConfiguration"]
    (extraction,) = [
        p
        for p in destination["ProcessingConfiguration"]["Processors"]
        if p["Type"] == "MetadataExtraction"
    ]
    params = {p["ParameterName"]: p["ParameterValue"] for p in extraction["Parameters"]}
    assert params["JsonParsingEngine"] == "JQ-1.6"
    query: str = params["MetadataExtractionQuery"]
    return query


@cache
def _jq() -> str:
    """Debian's jq 1.6, or a loud skip (a failure when root could have installed it)."""
    how = "`sudo make system-deps` (apt-get install jq)"
    found = shutil.which("jq")
    if not found:
        if os.geteuid() == 0:
            pytest.fail(f"jq is missing though this runs as root: run {how}")
        pytest.skip(f"NOT TESTED: the JQ partitioning query under jq 1.6, jq is missing: run {how}")
    version = subprocess.run(
        [found, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if version != JQ_VERSION:
        pytest.skip(
            f"NOT TESTED: the JQ partitioning query needs Firehose's engine, {JQ_VERSION}; "
            f"{found} is {version} (Debian 12's jq package is {JQ_VERSION})"
        )
    return found


def _trade(symbol: str, ts_ns: int, seq: int) -> Trade:
    return Trade(symbol, ts_ns, "sell", 329_915_000_000_000, 400_000_000_000, 0, ts_ns, seq, "x")


def _expected(trade: Trade) -> dict[str, str]:
    """The partition keys of the trade's UTC event hour, computed from ``ts_ns`` in Python."""
    at = datetime.fromtimestamp(trade.ts_ns // NS_PER_S, UTC)
    return {
        "symbol": trade.symbol,
        "year": f"{at:%Y}",
        "month": f"{at:%m}",
        "day": f"{at:%d}",
        "hour": f"{at:%H}",
    }


def _evaluate(query: str, data: bytes) -> list[dict[str, str]]:
    """Run ``query`` with jq on every JSON object of a packed record, as Firehose does."""
    done = subprocess.run(
        [_jq(), "-c", query], input=data, capture_output=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


def _instants() -> list[tuple[str, int]]:
    rng = random.Random(8)
    found = [
        (f"{name} {offset:+d} ns", boundary + offset)
        for name, boundary in BOUNDARIES.items()
        for offset in OFFSETS_NS
        if boundary + offset >= 0
    ]
    low, high = _instant("1999-01-01T00:00:00"), _instant("2100-01-01T00:00:00")
    found += [(f"random #{i}", rng.randrange(low, high)) for i in range(200)]
    return found


def test_the_query_floors_the_seconds(template):
    """Every time key is ``.ts/1000|floor|strftime(...)``: whole seconds go to strftime, so no
    key depends on how the engine treats or prints a fractional second."""
    query = _query(template)
    for key, fmt in zip(KEYS, ("%Y", "%m", "%d", "%H"), strict=True):
        assert f'{key}: (.ts/1000|floor|strftime("{fmt}"))' in query, query
    assert len(re.findall(r"strftime", query)) == len(KEYS)
    assert query.count("floor") == len(KEYS)


def test_jq_16_partitions_every_boundary_by_the_utc_event_hour(template):
    query = _query(template)
    instants = _instants()
    trades = [
        _trade("BTCUSD" if i % 2 else "sBTCUSDT", ts, i) for i, (_, ts) in enumerate(instants)
    ]
    records = pack(trades)
    assert len(records) == 1, "one record: one jq run"
    keys = _evaluate(query, records[0].data)
    assert len(keys) == len(trades)
    wrong = [
        f"{label} (ts_ns {t.ts_ns}): jq {got}, UTC event hour {_expected(t)}"
        for (label, _), t, got in zip(instants, trades, keys, strict=True)
        if got != _expected(t)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_boundaries_are_where_the_hour_changes():
    """The instants of the test above do straddle hour, day, month and year boundaries."""
    hours = {
        name: (
            datetime.fromtimestamp((b - 1) // NS_PER_S, UTC),
            datetime.fromtimestamp(b // NS_PER_S, UTC),
        )
        for name, b in BOUNDARIES.items()
        if b
    }
    assert (hours["hour"][0].hour, hours["hour"][1].hour) == (12, 13)
    assert hours["day"][0].day != hours["day"][1].day
    assert hours["month"][0].month != hours["month"][1].month
    assert hours["year"][0].year != hours["year"][1].year
    assert f"{hours['leap day starts'][1]:%m-%d}" == "02-29"
    assert f"{hours['leap day ends'][0]:%m-%d}" == "02-29"
    assert f"{hours['leap day 2000'][0]:%Y-%m-%d}" == "2000-02-29"
