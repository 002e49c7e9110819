"""A bare Celery worker with the pipeline's own Celery settings (the baselines), on queue ``noop``:

- ``bench.noop``: nothing but a counter increment;
- ``bench.same_io``: the S3 calls the detector makes and nothing else: read the image, write a
  record of the given size; then the counter.
"""

from __future__ import annotations

from typing import Any

from hitl.celery_app import app
from hitl.settings import get_settings
from hitl.worker import run_worker


def register() -> None:
    from hitl import aws
    from hitl.adapters.redis_index import connect

    @app.task(name="bench.noop", bind=True)
    def noop(self: Any, counter: str) -> None:
        # The only work: tell the benchmark this task ran.
        connect(get_settings().redis_url).incr(counter)

    @app.task(name="bench.same_io", bind=True)
    def same_io(self: Any, counter: str, bucket: str, key: str, record_key: str, record_bytes: int) -> None:
        s3 = aws.client("s3")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            body.read()
        finally:
            body.close()
        s3.put_object(Bucket=bucket, Key=record_key, Body=b" " * record_bytes, ContentType="application/json")
        connect(get_settings().redis_url).incr(counter)


if __name__ == "__main__":
    run_worker("noop", ["noop"], register, concurrency=get_settings().worker_concurrency or None)
