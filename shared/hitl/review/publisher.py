"""The AWS side of the service: task images from S3, output.json to S3, events to EventBridge."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from botocore.exceptions import ClientError

from hitl import aws
from hitl.aws import parse_s3_uri
from hitl.review.errors import PortalError


class Publisher(Protocol):
    def write_output(self, uri: str, document: dict[str, Any]) -> None: ...
    def put_events(self, entries: list[dict[str, Any]]) -> list[int]: ...
    def get_image(self, bucket: str, key: str, max_bytes: int) -> tuple[bytes, str]: ...
    def ready(self, bucket: str) -> bool: ...


class AwsPublisher:
    """boto3 clients from :mod:`hitl.aws`, so endpoints come from the environment (moto locally).
    ``clients`` replaces that factory (e.g. clients of another endpoint)."""

    def __init__(self, clients: Callable[[str], Any] = aws.client) -> None:
        self._client = clients

    def write_output(self, uri: str, document: dict[str, Any]) -> None:
        bucket, key = parse_s3_uri(uri)
        body = json.dumps(document, separators=(",", ":")).encode()
        self._client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")

    def put_events(self, entries: list[dict[str, Any]]) -> list[int]:
        """Send up to 10 entries; returns the indexes EventBridge did not accept."""
        response = self._client("events").put_events(Entries=entries)
        if not response.get("FailedEntryCount"):
            return []
        return [i for i, result in enumerate(response.get("Entries", [])) if result.get("ErrorCode")]

    def get_image(self, bucket: str, key: str, max_bytes: int) -> tuple[bytes, str]:
        s3 = self._client("s3")
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            raise PortalError(404, "The task's image is not in S3") from None
        if int(head.get("ContentLength", 0)) > max_bytes:
            raise PortalError(413, "The task's image is too large to serve")
        found = s3.get_object(Bucket=bucket, Key=key)
        body: bytes = found["Body"].read(max_bytes + 1)
        if len(body) > max_bytes:
            raise PortalError(413, "The task's image is too large to serve")
        content_type = str(found.get("ContentType") or "application/octet-stream")
        return body, content_type

    def ready(self, bucket: str) -> bool:
        self._client("s3").head_bucket(Bucket=bucket)
        return True
