"""The ``tradelake`` command as a user meets it: one-line errors, capture, record and replay."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tradelake.adapters.duckdb_lake import connect
from tradelake.cli import main
from tradelake.simulator import Simulator, SimulatorConfig, load_tape, synthetic_tape

pytestmark = pytest.mark.integration

START_NS = 1_795_737_600_000_000_000


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["capture", "--symbols", "BT$USD"], "not a Phemex symbol"),
        (["capture", "--symbols", ","], "at least one symbol"),
        (["capture", "--symbols", "BTCUSD,BTCUSD"], "listed twice"),
        (["capture", "--duration", "-5"], "positive number of seconds"),
        (["capture", "--url", "https://phemex.com"], "not a websocket URL"),
        (["capture", "--nope"], "unrecognized arguments"),
        (["frobnicate"], "invalid choice"),
        (["simulate", "--symbols", "B$D"], "not a Phemex symbol"),
        (["simulate", "--port", "http"], "0 to 65535"),
        (["simulate", "--compression", "0"], "positive number"),
    ],
)
def test_a_bad_argument_gets_one_line_with_the_fix(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    err = one_line_error(capsys, argv)
    assert says in err
    assert "--help" in err


def test_a_tape_that_cannot_be_read_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["simulate", "--tape", str(tmp_path / "missing.jsonl.gz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot read --tape" in err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_url_is_one_clear_line_suggesting_the_demo(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = f"ws://127.0.0.1:{closed_port()}"
    assert main(["capture", "--url", url, "--lake", str(tmp_path), "--duration", "5"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert f"cannot reach {url}" in err
    assert "tradelake demo" in err


def lake_keys(lake: Path) -> list[str]:
    return sorted(k for (k,) in connect(lake).sql("SELECT trade_key FROM trades").fetchall())


def test_capture_records_a_tape_that_replays_to_the_same_lake(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    symbols = ("BTCUSD", "BTCUSDT", "sBTCUSDT")
    tape = synthetic_tape(symbols, START_NS, 3_600_000_000_000, seed=4, rate=2.0)
    record, first, second = tmp_path / "tape.jsonl.gz", tmp_path / "a", tmp_path / "b"
    with Simulator(tape, SimulatorConfig(compression=600)) as sim:
        argv = ["capture", "--url", sim.url, "--symbols", ",".join(symbols), "--duration", "2"]
        assert main([*argv, "--replay", "--lake", str(first), "--record", str(record)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"recorded [\d,]+ frames", err)
    assert "BTCUSDT" in err
    assert "written" in err

    recorded = load_tape(record)
    keys = lake_keys(first)
    assert sum(len(f) for f in recorded.values()) == len(keys) > 1000
    with Simulator(recorded, SimulatorConfig(compression=600)) as replay:
        argv = ["capture", "--url", replay.url, "--symbols", ",".join(symbols), "--duration", "4"]
        assert main([*argv, "--replay", "--lake", str(second)]) == 0
    assert lake_keys(second) == keys


def test_simulate_command_serves_what_capture_takes(tmp_path: Path) -> None:
    port = closed_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tradelake.cli",
            "simulate",
            "--port",
            str(port),
            "--compression",
            "60",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        banner = server.stderr.readline() + server.stderr.readline()
        assert f"ws://127.0.0.1:{port}" in banner
        assert "--replay" in banner, "60x market time runs ahead of the clock"
        argv = ["capture", "--url", f"ws://127.0.0.1:{port}", "--lake", str(tmp_path), "--replay"]
        assert main([*argv, "--symbols", "BTCUSD,sBTCUSDT", "--duration", "1.5"]) == 0
    finally:
        server.terminate()
        server.wait(timeout=10)
    counts = dict(
        connect(tmp_path).sql("SELECT symbol, count(*) FROM trades GROUP BY 1").fetchall()
    )
    assert set(counts) == {"BTCUSD", "sBTCUSDT"}
    assert min(counts.values()) >= 200, "at least the first snapshot of each symbol"


def test_query_runs_sql_over_the_lake(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tape = synthetic_tape(("BTCUSD",), START_NS, 3_600_000_000_000, seed=4, rate=1.0)
    with Simulator(tape, SimulatorConfig(compression=600)) as sim:
        argv = ["capture", "--url", sim.url, "--lake", str(tmp_path), "--duration", "1"]
        assert main([*argv, "--replay"]) == 0
    capsys.readouterr()
    assert main(["query", "--lake", str(tmp_path), "SELECT count(*) AS n FROM trades"]) == 0
    assert re.search(r"\b\d{3,}\b", capsys.readouterr().out)
    assert main(["query", "--lake", str(tmp_path), "SELECT nope FROM trades"]) == 1
    assert "nope" in capsys.readouterr().err


def test_live_capture_refuses_trades_far_from_the_clock_unless_replaying(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tape = synthetic_tape(("BTCUSD",), START_NS, 3_600_000_000_000, seed=4, rate=1.0)
    with Simulator(tape, SimulatorConfig(compression=600)) as sim:
        argv = ["capture", "--url", sim.url, "--lake", str(tmp_path), "--duration", "1"]
        assert main(argv) == 0
    err = capsys.readouterr().err
    (row,) = [line.split() for line in err.splitlines() if line.startswith("BTCUSD ")]
    assert row[1:3] == ["0", "0"], "nothing received or written"
    assert int(row[-1].replace(",", "")) > 0, "rows from 2026-11-27 are more than a day old"
    assert lake_keys(tmp_path) == []


def test_a_refused_symbol_is_one_line_and_exit_1_while_the_others_are_captured(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tape = synthetic_tape(("BTCUSD",), START_NS, 3_600_000_000_000, seed=4, rate=1.0)
    with Simulator(tape, SimulatorConfig(compression=600)) as sim:
        # five refusals with the default backoff (0.5 s doubling, full jitter) take < 7.5 s
        argv = ["capture", "--url", sim.url, "--lake", str(tmp_path), "--duration", "8"]
        assert main([*argv, "--symbols", "BTCUSD,ETHUSD", "--replay"]) == 1
    err = capsys.readouterr().err
    refused = [line for line in err.splitlines() if "ETHUSD" in line and "rejected" in line]
    assert any(
        line.startswith(
            "tradelake capture: not captured: Phemex rejected trade.subscribe for ETHUSD"
        )
        for line in refused
    ), err
    assert {
        s for (s,) in connect(tmp_path).sql("SELECT DISTINCT symbol FROM trades").fetchall()
    } == {"BTCUSD"}
