"""Put a generated set into S3: the images and one Ground Truth manifest naming them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hitl import aws
from hitl.model.data import write_manifest


def upload_set(files: Sequence[tuple[bytes, dict[str, Any]]], manifest_uri: str, client: Any | None = None) -> str:
    """Upload each PNG to its line's ``source-ref`` and the manifest to ``manifest_uri``; returns it.

    Build ``files`` with ``generate_scenes(…, source_prefix="s3://bucket/prefix/")`` or
    ``ImageSet.files(…)`` so that the ``source-ref`` values point where the images should go.
    """
    s3 = client or aws.client("s3")
    for png, line in files:
        bucket, key = aws.parse_s3_uri(line["source-ref"])
        s3.put_object(Bucket=bucket, Key=key, Body=png, ContentType="image/png")
    bucket, key = aws.parse_s3_uri(manifest_uri)
    s3.put_object(Bucket=bucket, Key=key, Body=write_manifest(line for _, line in files).encode())
    return manifest_uri
