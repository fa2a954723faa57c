"""The Firehose error objects of the data bucket, as ``replay_errors.ErrorStore``.

The client is any object with boto3's S3 ``get_paginator``, ``get_object``, ``copy_object`` and
``delete_object``: this module does not import boto3. A move is a copy, then a delete of the
source (the bucket is versioned: the deleted version stays recoverable until the lifecycle
expires noncurrent versions).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tradelake.replay_errors import StoredObject


class S3ErrorStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client, self.bucket = client, bucket

    def list(self, prefix: str) -> Iterator[StoredObject]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield StoredObject(item["Key"], item["LastModified"])

    def read(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def move(self, key: str, to_key: str) -> None:
        self.client.copy_object(
            Bucket=self.bucket, Key=to_key, CopySource={"Bucket": self.bucket, "Key": key}
        )
        self.client.delete_object(Bucket=self.bucket, Key=key)
