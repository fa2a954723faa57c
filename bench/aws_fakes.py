"""The AWS clients the bench's measurements stand in: they accept everything and count it.

Kept free of heavy imports: the ingest handler's process imports this, and its peak memory is
what is measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class RecordingFirehose:
    """A Firehose client that accepts every record; keeps the record sizes of every call."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.trades = 0
        """JSON lines, one per trade, in all the records."""

    def put_record_batch(self, **kwargs: Any) -> Mapping[str, Any]:
        records = kwargs["Records"]
        self.calls.append([len(r["Data"]) for r in records])
        self.trades += sum(r["Data"].count(b"\n") for r in records)
        return {
            "FailedPutCount": 0,
            "RequestResponses": [{"RecordId": str(i)} for i in range(len(records))],
        }

    def counts(self) -> dict[str, int]:
        return {
            "calls": len(self.calls),
            "records": sum(len(call) for call in self.calls),
            "trades": self.trades,
            "bytes": sum(sum(call) for call in self.calls),
        }
