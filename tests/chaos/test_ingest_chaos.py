"""The ingest Lambda, step after step, into a Firehose that throttles, refuses and times out, and
killed in the middle of a flush.

moto stands in for Firehose, S3 and SSM, the simulator for Phemex (real websockets). In front
of moto's Firehose a seeded fake refuses whole calls (throttling, HTTP 500), fails on the
network before the request leaves (nothing stored) or after (stored, but the sink does not
know), and refuses single entries. One step is killed while a PutRecordBatch is half done: some
of its records are stored, none acknowledged, the checkpoint not moved. The steps are driven as
the workflow would: a killed step is retried with the same payload (``Recover``); a step that
fails (Firehose kept refusing a record) ends the execution, and the supervisor starts the next
from the S3 checkpoint.

Everything that reached Firehose is written into a local lake and read back through the
read-once view ``trades``: every trade of the tape outside declared gaps exactly once.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from aws_world import (
    HOUR_NS,
    START_NS,
    SYMBOLS,
    Aws,
    LambdaContext,
    emf_values,
    load_handler,
)
from chaos.suite import Chaos, check_lake
from tradelake.adapters.duckdb_lake import connect
from tradelake.adapters.firehose_sink import FirehoseDeliveryError, FirehoseSink
from tradelake.adapters.parquet_sink import ParquetSink
from tradelake.backoff import Backoff
from tradelake.cursor import Cursor
from tradelake.model import Trade
from tradelake.pack import unpack
from tradelake.simulator import Simulator, SimulatorConfig, synthetic_tape

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

WALL_S = 10.0
"""Wall seconds per market hour."""
STEP_S = 2.0
KILLED_STEP = 1
"""The second step is killed: the first has left a checkpoint behind it."""
KILL_AFTER_S = 1.2
"""Into the killed step: after a flush or two have moved the checkpoint past the payload."""


class LambdaKilled(BaseException):
    """The Lambda's process ends (timeout, out of memory): no ``except Exception`` catches it."""


class ChaoticFirehose:
    """moto's Firehose behind a seeded front that fails calls and entries in every way it can."""

    THROTTLE, SERVER_ERROR, NO_CONNECTION, READ_TIMEOUT = 0.12, 0.05, 0.05, 0.05
    REFUSED_ENTRY = 0.2

    def __init__(self, firehose: Any, seed: int) -> None:
        self.firehose = firehose
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.stored_unacknowledged = 0
        """Trades Firehose stored without the sink knowing (a read timeout, the killed call)."""
        self.stored_in_step: list[Trade] = []
        """Every trade stored since the step began."""
        self.kill_after: float | None = None
        """Kill the process at the first call after this ``time.monotonic()``, half of its
        records stored."""
        self.dead = False

    def put_record_batch(self, *, DeliveryStreamName: str, Records: list[Any]) -> Any:
        if self.dead:
            raise LambdaKilled("the process is gone")
        put = partial(self.firehose.put_record_batch, DeliveryStreamName=DeliveryStreamName)
        if self.kill_after is not None and time.monotonic() >= self.kill_after:
            self.kill_after, self.dead = None, True
            self.counts["Lambda kills mid-flush"] += 1
            self._store(put, Records[: math.ceil(len(Records) / 2)], acknowledged=False)
            raise LambdaKilled("killed in the middle of PutRecordBatch")
        draw = self.rng.random()
        for fault, chance in (
            ("Firehose throttled calls", self.THROTTLE),
            ("Firehose HTTP 500 calls", self.SERVER_ERROR),
            ("Firehose calls that never left", self.NO_CONNECTION),
            ("Firehose read timeouts after storing", self.READ_TIMEOUT),
        ):
            if draw < chance:
                self.counts[fault] += 1
                return self._fail(fault, put, Records)
            draw -= chance
        refused = [self.rng.random() < self.REFUSED_ENTRY for _ in Records]
        self.counts["Firehose refused entries"] += sum(refused)
        answers = iter(
            self._store(put, [r for r, no in zip(Records, refused, strict=True) if not no])
        )
        return {
            "FailedPutCount": sum(refused),
            "RequestResponses": [
                {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
                if no
                else next(answers)
                for no in refused
            ],
        }

    def _fail(self, fault: str, put: Callable[..., Any], records: list[Any]) -> Any:
        if fault == "Firehose throttled calls":
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
                "PutRecordBatch",
            )
        if fault == "Firehose HTTP 500 calls":
            raise ClientError(
                {
                    "Error": {"Code": "InternalError", "Message": "boom"},
                    "ResponseMetadata": {"HTTPStatusCode": 500},
                },
                "PutRecordBatch",
            )
        if fault == "Firehose calls that never left":
            raise EndpointConnectionError(endpoint_url="https://firehose.eu-west-1.amazonaws.com")
        self._store(put, records, acknowledged=False)
        raise ReadTimeoutError(endpoint_url="https://firehose.eu-west-1.amazonaws.com")

    def beyond(self, checkpoint: Cursor) -> int:
        """Trades of this step stored but not behind ``checkpoint``: a failed step's copies.

        A step that fails leaves them to the next, which receives them again from its
        snapshot; records acknowledged behind a refused one are among them (firehose_sink.py).
        """
        at = {symbol: c.ts_ns for symbol, c in checkpoint.symbols.items()}
        return sum(t.ts_ns >= at.get(t.symbol, -1) for t in self.stored_in_step)

    def _store(
        self, put: Callable[..., Any], records: list[Any], *, acknowledged: bool = True
    ) -> list[Any]:
        if not records:
            return []
        trades = [t for r in records for t in unpack(r["Data"])]
        self.stored_in_step += trades
        if not acknowledged:
            self.stored_unacknowledged += len(trades)
        return list(put(Records=records)["RequestResponses"])


def test_firehose_faults_and_a_kill_mid_flush_lose_nothing_and_read_nothing_twice(
    aws: Aws,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    chaos: Chaos,
) -> None:
    tape = synthetic_tape(SYMBOLS, START_NS, chaos.scale * HOUR_NS, seed=chaos.seed, rate=1.0)
    firehose = ChaoticFirehose(aws.firehose, chaos.seed)
    failures: Counter[str] = Counter()
    left_to_next_step = 0
    event: dict[str, Any] = {"cursor": None, "generation": 1, "loop": 0}
    with Simulator(tape, SimulatorConfig(compression=3600 / WALL_S)) as sim:
        module = load_handler(monkeypatch, sim.url)
        # Flush twice a second (many calls to fail) and back off in milliseconds, not seconds.
        fast = Backoff(attempts=8, base_s=0.005, cap_s=0.02)
        monkeypatch.setattr(
            module, "FirehoseSink", partial(FirehoseSink, max_age_s=0.5, backoff=fast)
        )
        for n in range(math.ceil(chaos.scale * WALL_S / STEP_S) + 1):
            firehose.stored_in_step.clear()
            if n == KILLED_STEP:
                firehose.kill_after = time.monotonic() + KILL_AFTER_S
            try:
                event = module.handler(
                    event,
                    LambdaContext(STEP_S),
                    firehose=firehose,
                    s3=aws.s3,
                    ssm=aws.ssm,
                    wall_ns=sim.event_ns,
                )
            except LambdaKilled:  # the workflow's Recover: the same payload, loop + 1
                failures["killed steps"] += 1
                firehose.dead = False
                payload, at_kill = Cursor.from_json(event["cursor"]), aws.checkpoint()
                left_to_next_step += firehose.beyond(at_kill)
                killed_ns = sim.event_ns()
                event = {**event, "loop": event["loop"] + 1}
            except FirehoseDeliveryError:  # the execution fails; the supervisor starts the next
                failures["failed executions"] += 1
                left_to_next_step += firehose.beyond(aws.checkpoint())
                event = {
                    "cursor": aws.checkpoint().to_json(),
                    "generation": event["generation"] + 1,
                    "loop": 0,
                }
    metrics = emf_values(capsys.readouterr().out)
    chaos.injected.update(firehose.counts)
    chaos.injected["failed executions (a record refused 8 times)"] = failures["failed executions"]
    assert all(
        firehose.counts[f] > 0
        for f in ("Firehose throttled calls", "Firehose refused entries", "Lambda kills mid-flush")
    )
    assert failures["killed steps"] == 1

    # Read once: the delivered records, stored as Firehose would, through the trades view.
    delivered = aws.delivered()
    sink = ParquetSink(tmp_path)
    sink.add(delivered)
    sink.flush()
    checks = check_lake(tape, tmp_path, aws.gaps())
    for c in checks:
        assert c.complete, c
        assert c.in_lake > 1000 * chaos.scale, c
    ((stored,),) = connect(tmp_path).sql("SELECT count(*) FROM trades_stored").fetchall()
    copies = stored - sum(c.in_lake for c in checks)
    assert copies > 0, "the kill stored records twice: only the view reads them once"
    # Copies come only from what Firehose stored unacknowledged (a read timeout, the killed
    # call) or past the checkpoint of a step that failed: the step after the kill did not
    # start over from the older payload.
    assert copies <= firehose.stored_unacknowledged + left_to_next_step

    # Resumed from the checkpoint, not the older payload the workflow passed on.
    assert all(at_kill.symbols[s].ts_ns > payload.symbols[s].ts_ns for s in SYMBOLS)
    late_gaps = [g for g in aws.gaps() if g.detected_ns >= killed_ns]
    assert all(g.from_ts_ns >= at_kill.symbols[g.symbol].ts_ns for g in late_gaps), late_gaps

    # Every fault shows in the sink's metrics, or failed the step loudly.
    counts = firehose.counts
    assert (
        metrics.get("FirehoseThrottles", 0)
        == counts["Firehose throttled calls"] + counts["Firehose HTTP 500 calls"]
    )
    assert metrics.get("FirehoseNetworkErrors", 0) == (
        counts["Firehose calls that never left"] + counts["Firehose read timeouts after storing"]
    )
    assert metrics.get("FirehoseFailedRecords", 0) == counts["Firehose refused entries"]
    assert metrics.get("FirehoseRetries", 0) > 0
