"""Read a loop's ``output.json`` (docs/formats.md §2) from S3."""

from __future__ import annotations

import json
from typing import Any

from hitl import aws
from hitl.domain.conversion import AnswerError


def read_output(uri: str) -> dict[str, Any]:
    bucket, key = aws.parse_s3_uri(uri)
    s3 = aws.client("s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey as exc:
        # Raised, not skipped: the message is retried (the object may still be replicating) and
        # reaches the dead-letter queue if it never appears.
        raise AnswerError("output_missing", uri) from exc
    try:
        document = json.loads(body)
    except json.JSONDecodeError as exc:
        raise AnswerError("output_not_json", uri) from exc
    if not isinstance(document, dict):
        raise AnswerError("output_not_json", uri)
    return document
