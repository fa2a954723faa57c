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


def test_a_reader_that_stops_reading_is_no_traceback(tmp_path: Path) -> None:
    """`tradelake query ... | head -1`: the pipe closes under the output, as it does for `head`."""
    command = "import sys; from tradelake.cli import main; sys.exit(main(sys.argv[1:]))"
    sql = "SELECT range AS n FROM range(200000)"
    argv = ["query", "--lake", str(tmp_path), "--format", "csv", sql]
    with subprocess.Popen(
        [sys.executable, "-c", command, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert proc.stdout.readline() == b"n\n"
        proc.stdout.close()
        err = proc.stderr.read().decode()
    assert proc.returncode == 141, err
    assert "Traceback" not in err


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


def one_line_exit_1(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_a_lake_path_that_is_a_file_is_one_line_before_connecting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lake = tmp_path / "lake.txt"
    lake.write_text("not a lake")
    url = f"ws://127.0.0.1:{closed_port()}"  # never reached: the lake is checked first
    for path in (lake, lake / "under"):
        err = one_line_exit_1(capsys, ["capture", "--url", url, "--lake", str(path)])
        assert err.startswith(f"tradelake capture: {lake} is a file, not a directory: give --lake")
    assert lake.read_text() == "not a lake"


def test_an_unwritable_lake_or_parent_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests run as root, so refusals are simulated (chmod would not refuse root)."""

    def refused(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    url = f"ws://127.0.0.1:{closed_port()}"
    with monkeypatch.context() as m:
        m.setattr(Path, "write_bytes", refused)
        err = one_line_exit_1(capsys, ["capture", "--url", url, "--lake", str(tmp_path)])
    assert f"cannot write into {tmp_path}/ (Permission denied)" in err
    with monkeypatch.context() as m:
        m.setattr(Path, "mkdir", refused)
        lake = tmp_path / "missing" / "lake"
        err = one_line_exit_1(capsys, ["capture", "--url", url, "--lake", str(lake)])
    assert f"cannot write into {lake}/ (Permission denied)" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["query", "SELECT count(*) FROM trades"],
        ["query", "--named", "completeness"],
        ["rollup"],
        ["report"],
    ],
    ids=["query", "named query", "rollup", "report"],
)
def test_reading_where_there_is_no_lake_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    missing, a_file = tmp_path / "no" / "such" / "dir", tmp_path / "file"
    a_file.write_text("")
    err = one_line_exit_1(capsys, [argv[0], "--lake", str(missing), *argv[1:]])
    assert err == f"tradelake {argv[0]}: no lake at {missing}/: give --lake the directory" + (
        " a capture wrote (or run tradelake demo)\n"
    )
    err = one_line_exit_1(capsys, [argv[0], "--lake", str(a_file), *argv[1:]])
    assert f"{a_file} is a file, not a lake directory" in err
    assert not missing.parent.exists()


def test_an_empty_directory_is_an_empty_lake(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sql = "SELECT count(*) n FROM trades"
    assert main(["query", "--lake", str(tmp_path), "--format", "csv", sql]) == 0
    assert capsys.readouterr().out.split() == ["n", "0"]


def test_a_full_disk_during_a_capture_is_one_line_and_the_cursor_claims_nothing_unwritten(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from tradelake.adapters import parquet_sink
    from tradelake.adapters.lake_files import FileCursorStore
    from tradelake.adapters.lake_files import stage as real_stage

    writes = 0

    def stage(path: Path, data: bytes | memoryview) -> Path:
        nonlocal writes
        writes += 1
        if writes > 1:  # the first flush lands; every later one finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_stage(path, data)

    monkeypatch.setattr(parquet_sink, "stage", stage)
    monkeypatch.setattr("tradelake.cli.LOCAL_FLUSH_AGE_S", 0.2)
    symbols = ("BTCUSD",)
    tape = synthetic_tape(symbols, START_NS, 3_600_000_000_000, seed=4, rate=2.0)
    with Simulator(tape, SimulatorConfig(compression=600)) as sim:
        argv = ["capture", "--url", sim.url, "--symbols", "BTCUSD", "--duration", "3"]
        assert main([*argv, "--replay", "--lake", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("tradelake capture:")]
    assert "the disk is full" in line
    assert "nothing acknowledged is lost" in line
    assert "next run resumes" in line
    assert "Traceback" not in err
    assert writes > 1
    stored = lake_keys(tmp_path)
    assert stored, "the first flush was written"
    cursor = FileCursorStore(tmp_path).load()
    ((last,),) = connect(tmp_path).sql("SELECT max(ts_ns) FROM trades_stored").fetchall()
    assert cursor.symbols["BTCUSD"].ts_ns == last, "the cursor claims no unwritten trade"
