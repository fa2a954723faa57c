"""The rollups' query engine on AWS: Athena queries in the stack's workgroup, polled with backoff.

- ``start`` runs StartQueryExecution in the workgroup with the Glue database as the context. The
  workgroup enforces its own settings (engine v3, results under ``athena-results/``, SSE-S3, the
  bytes-scanned cutoff), so no ResultConfiguration is sent. ``TooManyRequestsException`` (too
  many queries at once) and transient errors are retried with backoff.
- ``wait`` polls GetQueryExecution with capped exponential backoff and full jitter
  (``tradelake.backoff``) until the query is SUCCEEDED, FAILED or CANCELLED, and returns how it
  ended with Athena's reason and statistics; it never raises for a failed query, the caller
  decides. A query still running after ``timeout_s`` is stopped (StopQueryExecution) and
  reported as ``TIMED_OUT``.

``roll_up_stack`` runs the job with these and the S3 and Glue adapters of a ``RollupConfig``:
what the rollup Lambda and ``tradelake backfill`` both run. boto3 is never imported here: the
clients are passed in.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from tradelake.adapters.aws_errors import error_code
from tradelake.adapters.glue_catalog import GlueCatalog
from tradelake.adapters.s3_state import S3Prefixes
from tradelake.backoff import Backoff
from tradelake.config import RollupConfig
from tradelake.rollup import OnResult, QueryOutcome, RollupReport, roll_up

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
TIMED_OUT = "TIMED_OUT"
RETRYABLE = frozenset(
    {"TooManyRequestsException", "ThrottlingException", "InternalServerException"}
)

POLL_BACKOFF = Backoff(attempts=6, base_s=0.5, cap_s=5.0)
"""Polls wait up to 0.5 s, 1 s, 2 s, 4 s, then 5 s each (full jitter: a uniform share of that)."""
START_BACKOFF = Backoff(attempts=6, base_s=1.0, cap_s=20.0)


class AthenaQueries:
    """``QueryEngine`` over one workgroup and one Glue database."""

    def __init__(
        self,
        athena: Any,
        *,
        workgroup: str,
        database: str,
        timeout_s: float = 300.0,
        poll: Backoff = POLL_BACKOFF,
        retry: Backoff = START_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.athena = athena
        self.workgroup = workgroup
        self.database = database
        self.timeout_s = timeout_s
        self.poll = poll
        self.retry = retry
        self.clock = clock
        self.sleep = sleep
        self.rng = rng

    def start(self, sql: str) -> str:
        for attempt in range(self.retry.attempts):
            try:
                response = self.athena.start_query_execution(
                    QueryString=sql,
                    WorkGroup=self.workgroup,
                    QueryExecutionContext={"Database": self.database},
                )
                return str(response["QueryExecutionId"])
            except Exception as exc:
                if error_code(exc) not in RETRYABLE or attempt + 1 >= self.retry.attempts:
                    raise
            self.sleep(self.retry.delay(attempt, self.rng))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def wait(self, query_id: str) -> QueryOutcome:
        deadline = self.clock() + self.timeout_s
        polls = 0
        while True:
            execution = self.athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            status = execution.get("Status") or {}
            state = str(status.get("State", "UNKNOWN"))
            if state in TERMINAL:
                return _outcome(query_id, state, execution)
            if self.clock() >= deadline:
                self.athena.stop_query_execution(QueryExecutionId=query_id)
                return QueryOutcome(
                    query_id, TIMED_OUT, f"still {state} after {self.timeout_s:g} s: stopped"
                )
            self.sleep(self.poll.delay(min(polls, 16), self.rng))
            polls += 1


def _outcome(query_id: str, state: str, execution: dict[str, Any]) -> QueryOutcome:
    status = execution.get("Status") or {}
    error = status.get("AthenaError") or {}
    reason = str(status.get("StateChangeReason") or error.get("ErrorMessage") or "")
    statistics = execution.get("Statistics") or {}
    return QueryOutcome(
        query_id,
        state,
        reason,
        int(statistics.get("DataScannedInBytes") or 0),
        int(statistics.get("EngineExecutionTimeInMillis") or 0),
    )


def roll_up_stack(
    config: RollupConfig,
    hours: Sequence[datetime],
    *,
    athena: Any,
    s3: Any,
    glue: Any,
    out_of_time: Callable[[], bool] = lambda: False,
    on_result: OnResult | None = None,
) -> RollupReport:
    """``rollup.roll_up`` on one stack's bucket, database and workgroup (the Lambda, backfill)."""
    return roll_up(
        hours,
        bucket=config.data_bucket,
        trades_table=config.trades_table,
        engine=AthenaQueries(
            athena,
            workgroup=config.workgroup,
            database=config.glue_database,
            timeout_s=config.query_timeout_s,
        ),
        prefixes=S3Prefixes(s3, config.data_bucket),
        catalog=GlueCatalog(glue, config.glue_database),
        concurrency=config.concurrency,
        out_of_time=out_of_time,
        on_result=on_result,
    )
