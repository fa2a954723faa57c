"""The cursor checkpoint and the gap ledger in S3: the AWS twins of ``lake_files``.

- ``S3CursorStore``: the cursor travels in the Step Functions payload AND is checkpointed to one
  S3 object after every flush. ``load`` merges both (``Cursor.merge``, the newer position of each
  symbol): after a Lambda timeout the payload is older than the checkpoint, and after an operator
  deletes the checkpoint the payload still knows where the lake ends. S3 PUTs are atomic and
  strongly read-after-write consistent, so a reader sees the old checkpoint or the new one.
- ``S3GapLedger``: one JSON Lines object per ``record`` call under ``gaps/``, named and
  serialised exactly like the local ledger's files (``lake_files.gap_file_name`` and
  ``gap_lines``), so the Glue ``gaps`` table and the local DuckDB view read the same format.
  Objects are never rewritten: a crash cannot tear one.

- ``S3Prefixes``: deletes every object under a prefix (a rollup hour, before it is written
  again). With the bucket's versioning that leaves delete markers, and the old files stay
  recoverable for the noncurrent-version lifetime.

The clients are boto3's S3 client or anything with its ``get_object``/``put_object`` (and
``list_objects_v2``/``delete_objects`` for ``S3Prefixes``); this module does not import boto3.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from tradelake.adapters.aws_errors import error_code
from tradelake.adapters.lake_files import GAPS_DIR, gap_file_name, gap_lines
from tradelake.cursor import Cursor
from tradelake.model import Gap

_ABSENT = frozenset({"NoSuchKey", "404", "NotFound"})
JSON = "application/json"


class S3Client(Protocol):
    """The part of boto3's S3 client these adapters use."""

    def get_object(self, **kwargs: Any) -> Mapping[str, Any]: ...

    def put_object(self, **kwargs: Any) -> Mapping[str, Any]: ...


class S3CursorStore:
    """``CursorStore``: the payload cursor (``initial``) merged with the S3 checkpoint."""

    def __init__(self, client: S3Client, bucket: str, key: str, initial: Cursor | None) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.initial = initial

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def checkpoint(self) -> Cursor | None:
        """The checkpointed cursor, None if there is none; ValueError if it is corrupt."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except Exception as exc:
            if error_code(exc) in _ABSENT:
                return None
            raise
        try:
            data = json.loads(response["Body"].read())
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            return Cursor.from_json(data)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise ValueError(
                f"the cursor checkpoint {self.where} is corrupt ({exc}). Repair or delete it: "
                "without it the cursor in the Step Functions payload is used alone (a snapshot"
                " older than that cursor is written again: duplicates with the same trade_key)."
            ) from exc

    def load(self) -> Cursor:
        saved = self.checkpoint()
        initial = self.initial.copy() if self.initial is not None else Cursor()
        return initial if saved is None else initial.merge(saved)

    def save(self, cursor: Cursor) -> None:
        body = json.dumps(cursor.to_json(), separators=(",", ":")).encode()
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType=JSON)


class S3GapLedger:
    """``GapLedger``: ``<prefix><earliest detected_ns>-<uuid4 hex>.jsonl``, one object a call."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = f"{GAPS_DIR}/") -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix

    def record(self, gaps: Sequence[Gap]) -> None:
        if not gaps:
            return
        self.client.put_object(
            Bucket=self.bucket,
            Key=f"{self.prefix}{gap_file_name(gaps)}",
            Body=gap_lines(gaps),
            ContentType="application/x-ndjson",
        )


S3_DELETE_LIMIT = 1000
"""Most keys one DeleteObjects call takes."""


class S3PrefixNotDeletedError(RuntimeError):
    """S3 refused to delete some objects under a prefix."""


class S3Prefixes:
    """``rollup.Prefixes``: every object under a prefix of one bucket, deleted."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/") or prefix == "/":
            raise ValueError(f"refusing to delete {prefix!r}: not a directory prefix")
        deleted = 0
        while True:  # listing again after each round: deleting does not disturb a fresh list
            page = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=prefix, MaxKeys=S3_DELETE_LIMIT
            )
            keys = [o["Key"] for o in page.get("Contents", [])]
            if not keys:
                return deleted
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise S3PrefixNotDeletedError(
                    f"{len(errors)} object(s) under s3://{self.bucket}/{prefix} not deleted, "
                    f"the first {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
            deleted += len(keys)
