"""The ingest Lambda handler, step after step like the state machine runs it.

moto stands in for Firehose (it delivers every PutRecordBatch to S3 as one object), S3 and SSM;
the trade source is the real simulator over real websockets. Every record that reached Firehose
is decoded and compared with the simulator's tape: every trade outside declared gaps exactly
once, no ``trade_key`` twice.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from aws_world import (
    HOUR_NS,
    START_NS,
    STREAM,
    SYMBOLS,
    Aws,
    LambdaContext,
    assert_complete,
    load_handler,
    step,
)
from tradelake.adapters import websocket_source
from tradelake.adapters.firehose_sink import DELIVERY_BACKOFF, FirehoseDeliveryError, FirehoseSink
from tradelake.capture import Connect, Connection
from tradelake.cursor import Cursor
from tradelake.model import Trade
from tradelake.simulator import Faults, Simulator, SimulatorConfig, synthetic_tape

pytestmark = pytest.mark.integration


def emf_blobs(out: str) -> list[dict[str, Any]]:
    """The EMF metric blobs among the lines printed to stdout (logs are JSON lines too)."""
    blobs = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            blobs.append(json.loads(line))
    return blobs


class Records(logging.Handler):
    """The records a handler logs: duplicates dropped are in its log line, not a metric."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def metric_sum(blobs: list[dict[str, Any]], name: str, symbol: str | None = None) -> float:
    total = 0.0
    for blob in blobs:
        if name in blob and (symbol is None or blob.get("symbol") == symbol):
            value = blob[name]
            total += sum(value) if isinstance(value, list) else value
    return total


def test_loop_after_loop_with_dropped_sockets_every_trade_reaches_firehose_once(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tape = synthetic_tape(SYMBOLS, START_NS, HOUR_NS, seed=4, rate=0.5)  # ~1,800 a symbol
    faults = Faults(drop_every=1.2, close_every=2.0, seed=2)
    config = SimulatorConfig(compression=3600 / 14, faults=faults)  # the hour in 14 s: all steps
    event: dict[str, Any] | None = None
    outputs = []
    emf_per_step = []
    status = []
    with Simulator(tape, config) as sim:
        module = load_handler(monkeypatch, sim.url)
        for _ in range(4):
            event = step(module, aws, event, run_s=2.5, wall_ns=sim.event_ns)
            outputs.append(event)
            out = capsys.readouterr().out
            emf_per_step.append(emf_blobs(out))
            status += [
                json.loads(line) for line in out.splitlines() if '"message":"status"' in line
            ]

    assert sim.stats.drops + sim.stats.closes > 0, sim.stats
    assert [o["loop"] for o in outputs] == [1, 2, 3, 4]
    assert all(o["continue"] is True and o["generation"] == 0 for o in outputs)
    final = Cursor.from_json(outputs[-1]["cursor"])
    assert set(final.symbols) == set(SYMBOLS)
    assert aws.checkpoint() == final, "the checkpoint is where the last step ended"
    assert_complete(tape, aws)

    delivered = aws.delivered()
    for blobs in emf_per_step:
        per_symbol = [b for b in blobs if "TradesWritten" in b]
        assert len(per_symbol) >= 2 * len(SYMBOLS), "EMF flushed periodically, not only at the end"
    everything = [b for blobs in emf_per_step for b in blobs]
    for symbol in SYMBOLS:
        written = sum(t.symbol == symbol for t in delivered)
        assert metric_sum(everything, "TradesWritten", symbol) == written, "deltas add up"
    assert metric_sum(everything, "Reconnects") > 0
    # The lag is in the handler's status line every interval (the dashboard's Logs Insights
    # chart), not a custom metric.
    assert not any("Lag" in b for b in everything)
    assert len(status) >= 2 * 4, "a status line every interval"
    assert any(s.get("lag_ms_max", -1) >= 0 for s in status)
    namespaces = {b["_aws"]["CloudWatchMetrics"][0]["Namespace"] for b in everything}
    assert namespaces == {"tradelake-test"}
    # Published all the time: TradesWritten per symbol, nothing else (a custom metric costs
    # $0.30 a month). A fault counter appears only in an interval in which it is not zero.
    names = {m["Name"] for b in everything for m in b["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert "FirehoseRecordsSent" not in names, "AWS/Firehose IncomingRecords counts those"
    faults = [
        b[m["Name"]]
        for b in everything
        for m in b["_aws"]["CloudWatchMetrics"][0]["Metrics"]
        if m["Name"] != "TradesWritten"
    ]
    assert faults, "the dropped sockets were counted"
    assert all(min(v) > 0 if isinstance(v, list) else v > 0 for v in faults), "no zero published"


class FlakyFirehose:
    """moto's Firehose behind a flaky front: every third call is throttled, and of the others
    every other entry is refused (alternating, so every record gets through eventually)."""

    def __init__(self, firehose: Any) -> None:
        self.firehose = firehose
        self.calls = 0

    def put_record_batch(self, *, DeliveryStreamName: str, Records: list[Any]) -> Any:
        call = self.calls
        self.calls += 1
        if call % 3 == 0:
            raise ClientError(
                {"Error": {"Code": "ServiceUnavailableException", "Message": "Slow down."}},
                "PutRecordBatch",
            )
        refused = [(call + i) % 2 == 0 for i in range(len(Records))]
        accepted = [r for r, no in zip(Records, refused, strict=True) if not no]
        answers = iter(
            self.firehose.put_record_batch(DeliveryStreamName=DeliveryStreamName, Records=accepted)[
                "RequestResponses"
            ]
            if accepted
            else []
        )
        responses = [
            {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "x"}
            if no
            else next(answers)
            for no in refused
        ]
        return {"FailedPutCount": sum(refused), "RequestResponses": responses}


def test_a_flaky_firehose_still_gets_every_trade_once(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tape = synthetic_tape(SYMBOLS, START_NS, HOUR_NS, seed=6, rate=0.5)
    faults = Faults(drop_every=1.0, seed=5)
    config = SimulatorConfig(compression=3600 / 10, faults=faults)
    flaky = FlakyFirehose(aws.firehose)
    event: dict[str, Any] | None = None
    with Simulator(tape, config) as sim:
        module = load_handler(monkeypatch, sim.url)
        for _ in range(3):
            event = module.handler(
                event,
                LambdaContext(2.0),
                firehose=flaky,
                s3=aws.s3,
                ssm=aws.ssm,
                wall_ns=sim.event_ns,
            )
    blobs = emf_blobs(capsys.readouterr().out)
    assert metric_sum(blobs, "FirehoseFailedRecords") > 0
    assert metric_sum(blobs, "FirehoseThrottles") > 0
    assert metric_sum(blobs, "FirehoseRetries") > 0
    assert_complete(tape, aws)


def test_switched_off_at_the_start_returns_at_once_without_capturing(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.switch("off")
    module = load_handler(monkeypatch, "ws://127.0.0.1:9")

    def no_connect(url: str, timeout_s: float) -> Any:
        raise AssertionError("switched off: the handler must not connect")

    payload = {"version": 2, "symbols": {}}
    event = {"cursor": payload, "generation": 3, "loop": 7}
    started = time.monotonic()
    result = step(module, aws, event, run_s=30, connect=no_connect)
    assert time.monotonic() - started < 2
    assert result == {"cursor": payload, "generation": 3, "loop": 8, "continue": False}
    assert aws.objects("") == [], "nothing written: no records, no checkpoint, no gaps"


def test_switched_off_during_a_step_ends_the_loop_after_it(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    tape = synthetic_tape(SYMBOLS, START_NS, HOUR_NS, seed=1, rate=0.2)
    with Simulator(tape, SimulatorConfig(compression=3600 / 20)) as sim:
        module = load_handler(monkeypatch, sim.url)
        first = step(module, aws, {}, run_s=1.0, wall_ns=sim.event_ns)
        aws.switch("off")
        second = step(module, aws, first, run_s=1.0, wall_ns=sim.event_ns)
    assert first["continue"] is True
    assert second == {**first, "loop": 2, "continue": False}


def test_a_checkpoint_newer_than_the_payload_wins_no_trade_twice(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # slow market: a 200-trade snapshot reaches back past everything the second step wrote, so
    # resuming from the stale payload cursor would write those trades again
    tape = synthetic_tape(SYMBOLS, START_NS, HOUR_NS, seed=9, rate=0.05)  # ~50 a wall second
    with Simulator(tape, SimulatorConfig(compression=3600 / 3.6)) as sim:
        module = load_handler(monkeypatch, sim.url)
        first = step(
            module,
            aws,
            {"cursor": None, "generation": 1, "loop": 0},
            run_s=1.5,
            wall_ns=sim.event_ns,
        )
        second = step(module, aws, first, run_s=1.5, wall_ns=sim.event_ns)
        assert aws.checkpoint() == Cursor.from_json(second["cursor"])
        capsys.readouterr()
        # the second step "timed out": Step Functions goes on with the cursor it had
        logs = Records()
        module.logger.addHandler(logs)
        try:
            third = step(module, aws, first, run_s=1.5, wall_ns=sim.event_ns)
        finally:
            module.logger.removeHandler(logs)
        blobs = emf_blobs(capsys.readouterr().out)

    (captured,) = [r for r in logs.records if r.getMessage() == "captured"]
    assert captured.__dict__["duplicates"] > 0, "the snapshot overlapped the 2nd step"
    assert metric_sum(blobs, "GapDetected") == 0
    assert third["generation"] == 1
    assert sorted(g.reason for g in aws.gaps()) == ["no_cursor"] * len(SYMBOLS), "the first step"
    assert_complete(tape, aws)


def refusing(failures: int | None) -> tuple[Connect, list[float]]:
    """A connect refused ``failures`` times (None: always), then the real one; and when each
    refused attempt was made."""
    refused: list[float] = []

    def connect(url: str, timeout_s: float) -> Connection:
        if failures is None or len(refused) < failures:
            refused.append(time.monotonic())
            raise ConnectionRefusedError(111, "Connection refused")
        return websocket_source.connect(url, timeout_s)

    return connect, refused


def test_a_first_connect_failing_twice_is_retried_not_a_failed_step(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tape = synthetic_tape(SYMBOLS, START_NS, HOUR_NS, seed=3, rate=0.2)
    connect, refused = refusing(2)
    with Simulator(tape, SimulatorConfig(compression=3600 / 20)) as sim:
        module = load_handler(monkeypatch, sim.url)
        result = step(module, aws, {}, run_s=5.0, connect=connect, wall_ns=sim.event_ns)
    blobs = emf_blobs(capsys.readouterr().out)
    assert len(refused) == 2
    assert result["continue"] is True
    assert result["loop"] == 1
    assert metric_sum(blobs, "ConnectFailures") == 2
    assert metric_sum(blobs, "Reconnects") == 0, "a failed connect is not a reconnect"
    assert aws.delivered(), "once connected, it captured"
    assert aws.checkpoint() == Cursor.from_json(result["cursor"])


def test_a_source_that_never_answers_ends_the_step_at_its_deadline_cursor_unchanged(
    aws: Aws, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tape = synthetic_tape(SYMBOLS, START_NS, HOUR_NS, seed=3, rate=0.2)
    with Simulator(tape, SimulatorConfig(compression=3600 / 20)) as sim:
        module = load_handler(monkeypatch, sim.url)
        first = step(module, aws, {"generation": 2}, run_s=2.0, wall_ns=sim.event_ns)
    delivered = len(aws.delivered())
    capsys.readouterr()
    connect, refused = refusing(None)
    started = time.monotonic()
    second = step(module, aws, first, run_s=2.0, connect=connect)  # no exception
    elapsed = time.monotonic() - started
    blobs = emf_blobs(capsys.readouterr().out)
    assert 1.9 <= elapsed < 5, "it kept trying until the capture's deadline, then returned"
    assert second == {**first, "loop": 2, "continue": True}, "same cursor; the next step retries"
    assert len(refused) >= 2
    assert metric_sum(blobs, "ConnectFailures") == len(refused)
    assert len(aws.delivered()) == delivered
    assert aws.checkpoint() == Cursor.from_json(first["cursor"])


def test_the_firehose_client_makes_one_attempt_per_call_the_sink_owns_every_retry(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_handler(monkeypatch, "ws://127.0.0.1:9")
    firehose = module.clients["firehose"]
    assert firehose.meta.config.retries["total_max_attempts"] == 1, "botocore: no retries"
    for name in ("s3", "ssm"):  # botocore owns these: standard mode, 3 retries
        retries = module.clients[name].meta.config.retries
        assert (retries["mode"], retries["total_max_attempts"]) == ("standard", 4), name

    attempts: list[str] = []

    def read_timeout(request: Any, **kwargs: Any) -> None:
        """Every HTTP attempt times out waiting for the answer (raised where the send would be)."""
        attempts.append(request.url)
        raise ReadTimeoutError(endpoint_url=request.url)

    firehose.meta.events.register("before-send.firehose.PutRecordBatch", read_timeout)
    sink = FirehoseSink(firehose, STREAM, sleep=lambda s: None)
    sink.add([Trade("BTCUSD", START_NS, "buy", 10**14, 10**10, 0, START_NS + 5, 0, "snapshot")])
    with pytest.raises(FirehoseDeliveryError, match="ReadTimeoutError"):
        sink.flush()
    assert len(attempts) == sink.backoff.attempts == DELIVERY_BACKOFF.attempts, (
        "one HTTP attempt per sink attempt: no retries multiplied"
    )
    assert sink.network_errors == DELIVERY_BACKOFF.attempts
