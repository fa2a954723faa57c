"""The ingest control port on AWS: Step Functions executions, an SSM switch, the S3 checkpoint.

- the switch is an SSM String parameter whose value an operator sets to ``on`` or ``off``
  (``aws ssm put-parameter --overwrite --name … --value off``); a missing parameter or another
  value is an error, not a guess;
- executions are listed with ListExecutions (RUNNING ones across all pages; the most recent
  ``recent_limit`` of any status for the generation count, and of each status that ended
  badly for the supervisor's message and back-off) and started by name; the answer
  ``ExecutionAlreadyExists`` is reported as ``False``, for the core to sort out;
- shard ``s``'s checkpoint is the cursor JSON its ingest Lambda writes to
  ``s3://bucket/<cursor_key with -s>`` (``tradelake.shards.cursor_key``), read by the ingest's
  own ``S3CursorStore``.

The input is serialised canonically (sorted keys, no spaces), so two supervisors that read the
same checkpoint send byte-identical inputs, which Step Functions treats as the same request.
boto3 is never imported here: the clients are passed in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tradelake.adapters.aws_errors import error_code
from tradelake.adapters.s3_state import S3CursorStore
from tradelake.cursor import Cursor
from tradelake.shards import cursor_key as shard_cursor_key
from tradelake.supervise import ENDED_BADLY, RUNNING, Ended, parse_switch


def execution_arn(state_machine_arn: str, name: str) -> str:
    """``arn:aws:states:R:A:stateMachine:M`` and ``N`` → ``arn:aws:states:R:A:execution:M:N``."""
    parts = state_machine_arn.split(":")
    if len(parts) < 7 or parts[5] != "stateMachine":
        raise ValueError(f"not a state machine ARN: {state_machine_arn!r}")
    return ":".join([*parts[:5], "execution", parts[6], name])


class StepFunctionsIngestControl:
    """``IngestControl`` for one state machine, its switch parameter and its checkpoint."""

    def __init__(
        self,
        sfn: Any,
        ssm: Any,
        s3: Any,
        *,
        state_machine_arn: str,
        switch_parameter: str,
        bucket: str,
        cursor_key: str,
        recent_limit: int = 100,
    ) -> None:
        self.sfn = sfn
        self.ssm = ssm
        self.s3 = s3
        self.state_machine_arn = state_machine_arn
        self.switch_parameter = switch_parameter
        self.bucket = bucket
        self.cursor_key = cursor_key
        self.recent_limit = recent_limit

    def switched_on(self) -> bool:
        try:
            response = self.ssm.get_parameter(Name=self.switch_parameter)
        except Exception as exc:
            if error_code(exc) == "ParameterNotFound":
                raise LookupError(
                    f"the ingest switch parameter {self.switch_parameter} does not exist: "
                    "create it with the value on or off"
                ) from exc
            raise
        return parse_switch(str(response["Parameter"]["Value"]))

    def running(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            page = self.sfn.list_executions(
                stateMachineArn=self.state_machine_arn,
                statusFilter=RUNNING,
                **({"nextToken": token} if token else {}),
            )
            names += [e["name"] for e in page.get("executions", [])]
            token = page.get("nextToken")
            if not token:
                return names

    def recent(self) -> list[str]:
        page = self.sfn.list_executions(
            stateMachineArn=self.state_machine_arn, maxResults=self.recent_limit
        )
        return [e["name"] for e in page.get("executions", [])]

    def ended_badly(self) -> list[Ended]:
        """The most recent ``recent_limit`` executions of each status in ``ENDED_BADLY``: far
        more than the hour that ``supervise.first_in_the_hour`` looks back over, unless many
        shards crash at once (one fails about twelve times an hour while it backs off)."""
        found: list[Ended] = []
        for status in ENDED_BADLY:
            page = self.sfn.list_executions(
                stateMachineArn=self.state_machine_arn,
                statusFilter=status,
                maxResults=self.recent_limit,
            )
            found += [
                Ended(
                    e["name"],
                    status,
                    round(e["stopDate"].timestamp() * 1e3) * 1_000_000,
                    e["executionArn"],
                )
                for e in page.get("executions", [])
            ]
        return found

    def status(self, name: str) -> str | None:
        try:
            response = self.sfn.describe_execution(
                executionArn=execution_arn(self.state_machine_arn, name)
            )
        except Exception as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                return None
            raise
        return str(response["status"])

    def checkpoint(self, shard: int) -> Cursor | None:
        key = shard_cursor_key(self.cursor_key, shard)
        return S3CursorStore(self.s3, self.bucket, key, None).checkpoint()

    def start(self, name: str, payload: Mapping[str, Any]) -> bool:
        try:
            self.sfn.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=name,
                input=json.dumps(payload, sort_keys=True, separators=(",", ":")),
            )
        except Exception as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                return False
            raise
        return True
