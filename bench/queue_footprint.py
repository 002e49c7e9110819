"""Redis memory per queued ``detect`` task, without the rest of the stack (issue 13's figure, quickly).

Submits ``--tasks`` distinct images through the real client (``Client.submit_bytes``: the index claim
and the ``send_task`` the pipeline uses; the S3 upload goes to moto in-process) with no worker, then
measures the ``detect`` list the way ``bench_performance.py``'s backlog phase does: ``INFO memory``'s
``used_memory`` with the list minus without it (set aside with DUMP/DEL), per message; also
``MEMORY USAGE`` per message and the parts of one message (the same ``queued_message_parts`` as the
full benchmark).

It needs a Redis database of its own: it refuses one that holds any key, and deletes every key it
created afterwards. Prints JSON; ``--out`` also writes it to a file.

    .venv/bin/python bench/queue_footprint.py --redis-url redis://127.0.0.1:6379/5 --tasks 5000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import redis


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5", help="an empty Redis database")
    parser.add_argument("--tasks", type=int, default=5000, help="detect tasks to queue")
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    return parser.parse_args(argv)


def image(i: int) -> bytes:
    # Distinct PNG-signed bytes: the message depends on the image id and URI only, not on the pixels.
    return b"\x89PNG\r\n\x1a\n" + hashlib.sha256(f"queue-footprint-{i}".encode()).digest()


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])  # type: ignore[index]


def message_parts(raw: bytes) -> dict[str, Any]:
    """Sizes as ``bench_performance.py`` reports them (each part re-serialized with ``json.dumps``)."""
    message = json.loads(raw)
    return {
        "stored_bytes": len(raw),
        "message_bytes": len(json.dumps(message)),
        "body_bytes": len(message.get("body", "")),
        "body_encoding": (message.get("properties") or {}).get("body_encoding"),
        "headers_bytes": len(json.dumps(message.get("headers"))),
        "properties_bytes": len(json.dumps(message.get("properties"))),
    }


def measure(redis_url: str, tasks: int) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    if client.dbsize():
        raise SystemExit(f"{redis_url} holds keys: give this script an empty database of its own")
    # Set before hitl is imported: its settings and Celery app read the environment once.
    os.environ.update({
        "HITL_REDIS_URL": redis_url,
        "HITL_KEY_PREFIX": f"qfp{uuid.uuid4().hex[:8]}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    })
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]  # moto's in-process mock answers only AWS's own endpoints
    from moto import mock_aws

    from hitl import aws
    from hitl.submit import Client

    try:
        with mock_aws():
            aws.reset_clients()
            submit = Client()
            aws.client("s3").create_bucket(Bucket=submit.settings.bucket)
            before = used_memory(client)
            outcomes = [submit.submit_bytes(image(i), f"q{i}.png", "bench").outcome for i in range(tasks)]
        queued = used_memory(client)
        length = int(client.llen("detect"))  # type: ignore[arg-type]
        if outcomes.count("queued") != tasks or length != tasks:
            raise RuntimeError(f"{outcomes.count('queued')} queued, {length} in the list, of {tasks}")
        sample = client.lindex("detect", 0)
        assert isinstance(sample, bytes)
        list_bytes = int(client.memory_usage("detect", samples=0) or 0)  # type: ignore[arg-type]
        client.delete("detect")
        without = used_memory(client)
        return {
            "tasks": tasks,
            "redis_kb_per_queued_task": (queued - without) / tasks / 1024,
            "redis_kb_per_queued_task_memory_usage": list_bytes / tasks / 1024,
            "redis_kb_per_queued_image": (queued - before) / tasks / 1024,
            "queued_message_parts": message_parts(sample),
            "sample_message": json.loads(sample),
        }
    finally:
        for key in client.scan_iter(count=1000):  # the database was empty: every key is this run's
            client.delete(key)
        aws.reset_clients()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = measure(args.redis_url, args.tasks)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
