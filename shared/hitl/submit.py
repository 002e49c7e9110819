"""The Python client upstream systems use to submit images (the ``hitl submit`` CLI wraps it).

An image's id is its content's SHA-256; the bytes go to S3 and the ``detect`` queue carries only
the reference. Submitting the same image again is recorded once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TypeVar

from celery import Celery

from hitl import aws
from hitl.adapters.redis_index import ImageIndex
from hitl.domain.images import ImageRejected, check_size, content_id, sniff_extension
from hitl.settings import Settings, get_settings

DETECT_TASK = "hitl.detect"
T = TypeVar("T")
Outcome = Literal["queued", "duplicate", "rejected"]


@dataclass(frozen=True)
class Submission:
    outcome: Outcome
    name: str
    image_id: str | None = None
    uri: str | None = None
    reason: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


class Client:
    def __init__(self, settings: Settings | None = None, celery: Celery | None = None) -> None:
        self.settings = settings or get_settings()
        if celery is None:
            from hitl.celery_app import app

            celery = app
        self.celery: Celery = celery
        self.index = ImageIndex(self.settings)

    def _reject(self, name: str, reason: str, detail: str, source: str, image_id: str | None = None) -> Submission:
        self.index.reject(image_id, name, reason, detail, source)
        return Submission("rejected", name, image_id=image_id, reason=reason, detail=detail)

    def _enqueue(self, image_id: str, uri: str, source: str, annotate: bool = False) -> None:
        now = time.time()
        task_id = str(uuid.uuid4())
        kwargs = {"image_id": image_id, "uri": uri, "source": source, "enqueued_at": now}
        if annotate:
            kwargs["annotate"] = True
        # No argsrepr/kwargsrepr here: passed to send_task, Celery copies them into the message's
        # properties too. The app's CompactAMQP leaves the reprs out of every task message.
        self.celery.send_task(DETECT_TASK, kwargs=kwargs, queue="detect", task_id=task_id)
        self.index.enqueued(image_id, task_id, now)

    def _claim_and_enqueue(self, image_id: str, uri: str, source: str, annotate: bool = False) -> bool:
        """Claim, then send. Safe to repeat: a claimed image whose message was never sent (a crash
        in between) is sent now. False: a duplicate, already on its way or done."""
        if not self.index.claim(image_id, uri, source) and not self.index.needs_enqueue(image_id):
            return False
        self._enqueue(image_id, uri, source, annotate)
        return True

    def submit_bytes(self, data: bytes, name: str, source: str = "api") -> Submission:
        try:
            check_size(len(data), self.settings.image_limits())
        except ImageRejected as rejection:
            return self._reject(name, rejection.reason, rejection.detail, source)
        image_id = content_id(data)
        extension = sniff_extension(data) or (Path(name).suffix.lstrip(".").lower() or "bin")
        key = f"{self.settings.images_prefix}{image_id}.{extension}"
        uri = self.settings.s3_uri(key)
        if self.index.get(image_id).get("state") and not self.index.needs_enqueue(image_id):
            return Submission("duplicate", name, image_id=image_id, uri=uri)
        # Content-addressed: a retried upload writes the same bytes to the same key.
        aws.client("s3").put_object(Bucket=self.settings.bucket, Key=key, Body=data)
        if not self._claim_and_enqueue(image_id, uri, source):
            return Submission("duplicate", name, image_id=image_id, uri=uri)
        return Submission("queued", name, image_id=image_id, uri=uri)

    def submit_file(self, path: Path, source: str = "cli") -> Submission:
        try:
            size = path.stat().st_size
            check_size(size, self.settings.image_limits())
        except ImageRejected as rejection:
            return self._reject(str(path), rejection.reason, rejection.detail, source)
        except OSError as exc:
            return self._reject(str(path), "unreadable", str(exc), source)
        return self.submit_bytes(path.read_bytes(), str(path), source)

    def submit_s3_object(self, uri: str, source: str = "s3", annotate: bool = False) -> Submission:
        """An object already in the bucket: hashed where it is, not copied. ``annotate``: the image
        goes to human review whatever the model's confidence (model-assisted annotation)."""
        try:
            bucket, key = aws.parse_s3_uri(uri)
        except ValueError as exc:
            return self._reject(uri, "bad_uri", str(exc), source)
        if bucket != self.settings.bucket:
            return self._reject(
                uri, "wrong_bucket", f"{bucket} is not the configured bucket {self.settings.bucket}", source
            )
        s3 = aws.client("s3")
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
            check_size(int(head["ContentLength"]), self.settings.image_limits())
            data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ImageRejected as rejection:
            return self._reject(uri, rejection.reason, rejection.detail, source)
        except s3.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return self._reject(uri, "not_found", f"{uri} does not exist", source)
            raise
        image_id = content_id(data)
        if not self._claim_and_enqueue(image_id, uri, source, annotate):
            return Submission("duplicate", uri, image_id=image_id, uri=uri)
        return Submission("queued", uri, image_id=image_id, uri=uri)

    def submit_many(
        self, items: Iterable[T], submit_one: Callable[[T], Submission], jobs: int = 4
    ) -> Iterator[Submission]:
        """Submit concurrently (uploads wait on the network, not the CPU); results in input order."""
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            yield from pool.map(submit_one, items)

    def list_s3(self, uri: str) -> Iterator[str]:
        """Object URIs under an ``s3://bucket/prefix`` (the bucket is checked per object)."""
        bucket, _, prefix = uri[5:].partition("/")
        paginator = aws.client("s3").get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):
                    yield f"s3://{bucket}/{item['Key']}"

    def status(self, image_id: str) -> dict[str, str]:
        return self.index.get(image_id)
