"""The labelled dataset: one S3 object per human-labelled example, keyed by loop name.

``<datasets_prefix><dataset>/lines/<loop>.json`` holds one manifest line. Writing it twice writes
the same bytes, so a redelivered event or two racing ingestors can never add a second line; the
merged manifest is built from these objects, by ``source-ref`` (:mod:`hitl.domain.merge`).

Redis keeps what the trainer needs, updated atomically with "is this example new":
- ``dataset:<dataset>:examples`` set of example keys (all of them);
- ``dataset:<dataset>:untrained`` set of example keys not yet used by a training run; its size is
  "human labels added since the last training". The trainer removes the keys it trained on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis

from hitl import aws
from hitl.adapters.redis_index import connect
from hitl.domain.merge import merge_manifest, to_coco
from hitl.settings import Settings

_ADD = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


class LabelledDataset:
    def __init__(self, settings: Settings, name: str | None = None, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.name = name or settings.labeled_dataset
        self.redis = client or connect(settings.redis_url)
        self._add = self.redis.register_script(_ADD)

    @property
    def prefix(self) -> str:
        return f"{self.settings.datasets_prefix}{self.name}/"

    def line_key(self, loop_name: str) -> str:
        return f"{self.prefix}lines/{loop_name}.json"

    @property
    def examples_key(self) -> str:
        return self.settings.key("dataset", self.name, "examples")

    @property
    def untrained_key(self) -> str:
        return self.settings.key("dataset", self.name, "untrained")

    def add(self, loop_name: str, line: dict[str, Any]) -> bool:
        """Store the example (idempotent); True only the first time it is counted."""
        key = self.line_key(loop_name)
        aws.client("s3").put_object(
            Bucket=self.settings.bucket,
            Key=key,
            Body=(json.dumps(line, separators=(",", ":")) + "\n").encode(),
            ContentType="application/json",
        )
        # After the object is durable: a crash in between re-writes the same bytes and counts then.
        return bool(self._add(keys=[self.examples_key, self.untrained_key], args=[key]))

    def untrained_count(self) -> int:
        return int(self.redis.scard(self.untrained_key))  # type: ignore[arg-type]

    def lines(self) -> Iterator[dict[str, Any]]:
        s3 = aws.client("s3")
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=f"{self.prefix}lines/"):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=self.settings.bucket, Key=item["Key"])["Body"].read()
                yield json.loads(body)

    def build_manifest(self, base: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The existing manifest lines (``base``) with every human answer merged in."""
        return merge_manifest(base or [], self.lines())

    def write_manifest(self, lines: list[dict[str, Any]]) -> tuple[str, str]:
        """``manifest.jsonl`` and ``coco.json`` beside the lines; returns their s3:// URIs."""
        s3 = aws.client("s3")
        manifest_key, coco_key = f"{self.prefix}manifest.jsonl", f"{self.prefix}coco.json"
        body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        s3.put_object(Bucket=self.settings.bucket, Key=manifest_key, Body=body.encode())
        s3.put_object(Bucket=self.settings.bucket, Key=coco_key, Body=json.dumps(to_coco(lines)).encode())
        return self.settings.s3_uri(manifest_key), self.settings.s3_uri(coco_key)

    def copy_to_label_folder(self, source_uri: str, label: str) -> str:
        """As the reference solution: the image also goes to ``images_labeled_by_folder/<label>/``."""
        bucket, key = aws.parse_s3_uri(source_uri)
        target = f"{self.settings.labeled_folder_prefix}{label}/{key.rsplit('/', 1)[-1]}"
        aws.client("s3").copy_object(
            Bucket=self.settings.bucket, Key=target, CopySource={"Bucket": bucket, "Key": key}
        )
        return self.settings.s3_uri(target)
