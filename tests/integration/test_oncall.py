"""Tools for the person on call (issue 9): ``tradelake switch`` against moto's SSM and
``tradelake status --lake`` on real lakes written with ParquetSink, healthy and unhealthy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aws_world import moto_credentials
from tradelake.adapters.lake_files import FileCursorStore, JsonlGapLedger
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.cli import main
from tradelake.cursor import Cursor
from tradelake.model import INCREMENTAL, Gap, Trade, parse_fixed
from tradelake.oncall import NS_PER_HOUR, NS_PER_MINUTE, switch_parameter
from tradelake.supervise import parse_switch

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
STAGE = "test"
NAME = "/tradelake/test/ingest"


@pytest.fixture
def ssm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    moto_credentials(monkeypatch)
    with mock_aws():
        yield boto3.client("ssm", region_name=REGION)


def deploy_switch(ssm: Any, value: str = "on") -> None:
    """The parameter as resources/storage.yml creates it."""
    ssm.put_parameter(Name=NAME, Value=value, Type="String", AllowedPattern="^(on|off)$")


def switch_value(ssm: Any) -> bool:
    return parse_switch(ssm.get_parameter(Name=NAME)["Parameter"]["Value"])


def test_the_parameter_name_is_the_stacks() -> None:
    serverless = (Path(__file__).resolve().parents[2] / "serverless.yml").read_text()
    assert "ingestSwitchParameter: /tradelake/${sls:stage}/ingest" in serverless
    assert switch_parameter(STAGE) == NAME


def test_switch_off_and_on(ssm: Any, capsys: pytest.CaptureFixture[str]) -> None:
    deploy_switch(ssm)
    assert main(["switch", "off", "--stage", STAGE, "--region", REGION]) == 0
    assert switch_value(ssm) is False
    out = capsys.readouterr().out
    assert f"{NAME} ({REGION}) set to off (was on)" in out
    assert main(["switch", "off", "--stage", STAGE, "--region", REGION]) == 0
    assert "set to off (unchanged)" in capsys.readouterr().out
    assert main(["switch", "on", "--stage", STAGE]) == 0  # region from AWS_REGION
    assert switch_value(ssm) is True
    assert "set to on (was off)" in capsys.readouterr().out


def test_switch_of_a_stage_not_deployed_creates_nothing(
    ssm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["switch", "off", "--stage", STAGE, "--region", REGION]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"no parameter {NAME} in {REGION}" in err
    assert ssm.describe_parameters()["Parameters"] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["switch", "off", "--stage", "no/such"],
        ["switch", "off", "--stage", ""],
        ["switch", "maybe", "--stage", STAGE],
        ["switch", "on"],
        ["status", "--lake", ".", "--stale-after", "-3"],
        ["status"],
    ],
)
def test_bad_arguments_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err


# --- status --lake -----------------------------------------------------------------------------


def trade(symbol: str, ts_ns: int, k: int = 0) -> Trade:
    return Trade(
        symbol, ts_ns, "buy", parse_fixed("100.5"), parse_fixed("0.5"), k, 0, 1, INCREMENTAL
    )


def write_lake(lake: Path, now_ns: int, newest_age_ns: int) -> None:
    """BTCUSD and BTCUSDT: a trade 3 h before ``now``, two 30 min before the newest, the newest."""
    sink = ParquetSink(lake)
    cursor = Cursor()
    for symbol in ("BTCUSD", "BTCUSDT"):
        newest = now_ns - newest_age_ns
        trades = [
            trade(symbol, now_ns - 3 * NS_PER_HOUR),
            trade(symbol, newest - 30 * NS_PER_MINUTE),
            trade(symbol, newest - 30 * NS_PER_MINUTE, k=1),
            trade(symbol, newest),
        ]
        sink.add(trades)
        sink.flush()
        cursor.advance(trades)
    FileCursorStore(lake).save(cursor)


def status(lake: Path, *extra: str) -> int:
    return main(["status", "--lake", str(lake), *extra])


def test_status_of_a_healthy_lake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time_ns()
    lake = tmp_path / "lake"
    write_lake(lake, now, newest_age_ns=2 * NS_PER_MINUTE)
    # a gap declared 5 h ago: counted in the 24 h, not a reason to be unhealthy
    old = Gap(
        "BTCUSD", now - 6 * NS_PER_HOUR, now - 5 * NS_PER_HOUR - 1, now - 5 * NS_PER_HOUR, "x"
    )
    JsonlGapLedger(lake).record([old])
    assert status(lake) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("healthy")
    assert "unhealthy" not in out
    btcusd = out.split("BTCUSD\n")[1].split("BTCUSDT\n")[0]
    assert "(2 min behind)" in btcusd
    assert "3 in the last hour, 4 in 24 h" in btcusd
    assert "gaps (24 h)    1 spanning 60 min (0 in the last hour)" in btcusd
    assert "newest file    trades/symbol=BTCUSD/" in btcusd
    cursor_time = time.strftime(
        "%Y-%m-%dT%H:%M:%S", time.gmtime((now - 2 * NS_PER_MINUTE) // 10**9)
    )
    assert f"cursor         {cursor_time}Z" in btcusd


def test_status_of_an_unhealthy_lake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time_ns()
    lake = tmp_path / "lake"
    write_lake(lake, now, newest_age_ns=40 * NS_PER_MINUTE)
    gap = Gap(
        "BTCUSDT",
        now - 12 * NS_PER_MINUTE,
        now - 11 * NS_PER_MINUTE,
        now - 10 * NS_PER_MINUTE,
        "stall",
    )
    JsonlGapLedger(lake).record([gap])
    assert status(lake) == 1
    out = capsys.readouterr().out
    assert "unhealthy: BTCUSD: newest trade is 40 min old (stale after 15 min)" in out
    assert "unhealthy: BTCUSDT: newest trade is 40 min old" in out
    assert "unhealthy: BTCUSDT: 1 gap(s) declared in the last hour" in out
    # a longer --stale-after forgives the lag, not the gap
    assert status(lake, "--stale-after", "60") == 1
    out = capsys.readouterr().out
    assert "newest trade is" not in out
    assert out.count("unhealthy:") == 1


def test_status_of_an_empty_or_missing_lake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert status(tmp_path) == 1
    assert "unhealthy: no trades, cursor or gaps" in capsys.readouterr().out
    assert status(tmp_path / "nope") == 1
    assert (
        capsys.readouterr().err
        == f"tradelake status: there is no lake at {tmp_path / 'nope'}: no such directory\n"
    )
    file = tmp_path / "file"
    file.write_text("x")
    assert status(file) == 1
    assert capsys.readouterr().err == f"tradelake status: {file} is a file, not a lake directory\n"
