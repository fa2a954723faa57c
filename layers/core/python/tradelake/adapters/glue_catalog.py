"""The catalog port on AWS: partitions added to Glue tables with BatchCreatePartition.

Each partition gets the table's storage descriptor (columns, SerDe, input and output formats), so
Athena reads it exactly as the table says, with ``Location`` set to the partition's own prefix.
The table is read once and kept for ``table_ttl_s`` (five minutes): a warm Lambda does not call
GetTable per notification, and a schema change still reaches new partitions without a redeploy.

Glue takes at most 100 partitions per call and answers a partition that exists with a per-entry
``AlreadyExistsException`` inside a successful response: that is counted as ``existing``, not as
an error. Throttling and transient service errors — of the whole call or of single entries — are
retried with capped exponential backoff and full jitter; any other per-entry error is returned as
a ``Failure`` for the caller to report. ``partition_values`` lists the partitions matching a
GetPartitions expression (which symbols a trades hour has, for the rollups), or all of them.
boto3 is never imported here: the client is passed in.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from tradelake.adapters.aws_errors import error_code
from tradelake.backoff import Backoff
from tradelake.catalog import Added, Failure, Partition, batched

GLUE_BATCH_LIMIT = 100
"""Most PartitionInputs BatchCreatePartition takes in one call."""

ALREADY_EXISTS = "AlreadyExistsException"
RETRYABLE = frozenset(
    {
        "ThrottlingException",
        "ConcurrentModificationException",
        "InternalServiceException",
        "OperationTimeoutException",
    }
)


GLUE_BACKOFF = Backoff()


def _partition_input(partition: Partition, descriptor: dict[str, Any]) -> dict[str, Any]:
    """A PartitionInput: the table's storage descriptor, located at the partition's prefix."""
    return {
        "Values": list(partition.values),
        "StorageDescriptor": {**descriptor, "Location": partition.location},
    }


class GlueCatalog:
    """``PartitionCatalog`` over the tables of one Glue database."""

    def __init__(
        self,
        glue: Any,
        database: str,
        *,
        backoff: Backoff = GLUE_BACKOFF,
        table_ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.glue = glue
        self.database = database
        self.backoff = backoff
        self.table_ttl_s = table_ttl_s
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self._descriptors: dict[str, tuple[float, dict[str, Any]]] = {}

    def add_partitions(self, table: str, partitions: Sequence[Partition]) -> Added:
        descriptor = self.storage_descriptor(table)
        created = existing = 0
        failed: list[Failure] = []
        for batch in batched(partitions, GLUE_BATCH_LIMIT):
            added = self._add_batch(table, descriptor, batch)
            created += added.created
            existing += added.existing
            failed.extend(added.failed)
        return Added(created, existing, tuple(failed))

    def partition_values(self, table: str, expression: str | None = None) -> list[tuple[str, ...]]:
        """The values of ``table``'s partitions that match a GetPartitions ``expression`` (all
        of them without one: ``tradelake.reconcile``)."""
        found: list[tuple[str, ...]] = []
        token: str | None = None
        while True:
            page = self._call(
                self.glue.get_partitions,
                DatabaseName=self.database,
                TableName=table,
                ExcludeColumnSchema=True,
                **({"Expression": expression} if expression is not None else {}),
                **({"NextToken": token} if token else {}),
            )
            found += [tuple(p["Values"]) for p in page.get("Partitions", [])]
            token = page.get("NextToken")
            if not token:
                return found

    def storage_descriptor(self, table: str) -> dict[str, Any]:
        """The table's StorageDescriptor, from GetTable at most once per ``table_ttl_s``."""
        now = self.clock()
        cached = self._descriptors.get(table)
        if cached is not None and now - cached[0] < self.table_ttl_s:
            return cached[1]
        response = self._call(self.glue.get_table, DatabaseName=self.database, Name=table)
        descriptor: dict[str, Any] = response["Table"]["StorageDescriptor"]
        self._descriptors[table] = (now, descriptor)
        return descriptor

    def _add_batch(
        self, table: str, descriptor: dict[str, Any], batch: Sequence[Partition]
    ) -> Added:
        pending = {p.values: p for p in batch}
        created = existing = 0
        failed: list[Failure] = []
        for attempt in range(self.backoff.attempts):
            if attempt:
                self.sleep(self.backoff.delay(attempt - 1, self.rng))
            response = self._call(
                self.glue.batch_create_partition,
                DatabaseName=self.database,
                TableName=table,
                PartitionInputList=[_partition_input(p, descriptor) for p in pending.values()],
            )
            retry: dict[tuple[str, ...], Partition] = {}
            errors = 0
            for error in response.get("Errors") or []:
                partition = pending.get(tuple(error.get("PartitionValues") or ()))
                if partition is None:
                    continue
                errors += 1
                detail = error.get("ErrorDetail") or {}
                code = str(detail.get("ErrorCode", "Unknown"))
                if code == ALREADY_EXISTS:
                    existing += 1
                elif code in RETRYABLE and attempt + 1 < self.backoff.attempts:
                    retry[partition.values] = partition
                else:
                    failed.append(Failure(partition, code, str(detail.get("ErrorMessage", ""))))
            created += len(pending) - errors
            pending = retry
            if not pending:
                break
        return Added(created, existing, tuple(failed))

    def _call(self, method: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        """``method(**kwargs)``, retrying throttling and transient errors of the whole call."""
        retries = 0
        while True:
            try:
                return method(**kwargs)
            except Exception as exc:
                if error_code(exc) not in RETRYABLE or retries + 1 >= self.backoff.attempts:
                    raise
            self.sleep(self.backoff.delay(retries, self.rng))
            retries += 1
