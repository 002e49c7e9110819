"""The local stack's AWS state across ``make down`` / ``make up``.

moto's server keeps everything in memory. ``make down`` therefore saves, just before moto stops and
after every writer has stopped, what users make: every bucket's objects (with their content type and
metadata), every SSM parameter, and the messages still waiting in SQS queues. ``make up`` restores
objects and parameters before the bootstrap (so restored uploads trigger no S3 notification and
parameters the user changed are kept, not reset to defaults), and the queued messages after it.
Queues, rules, notification and CORS configuration are recreated by the bootstrap itself.

The snapshot is one folder, written beside the old one and swapped in with a rename, so a failure
while saving keeps the previous snapshot whole. Objects are stored as numbered blobs with a JSON
index: S3 keys need not be valid file names.

Why not moto's recorder: it replays every request ever made (uploads of every image, every
ReceiveMessage and DeleteMessage), so its replay time and file grow with the stack's whole history,
while this snapshot grows with what exists now (see bench/bench_state.py for measured figures).
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SNAPSHOT_DIR = "state/moto"
FORMAT_VERSION = 1
TRANSFER_THREADS = 8


@dataclass(frozen=True)
class SnapshotSummary:
    objects: int
    bytes: int
    parameters: int
    messages: int
    seconds: float
    saved_at: float = 0.0

    def describe(self) -> str:
        return (
            f"{self.objects} objects ({self.bytes / 1e6:.1f} MB), {self.parameters} parameters, "
            f"{self.messages} queued messages in {self.seconds:.1f}s"
        )


def snapshot_dir(run_dir: Path) -> Path:
    return run_dir / SNAPSHOT_DIR


def _clients(endpoint: str, credentials: dict[str, str] | None = None) -> tuple[Any, Any, Any]:
    import boto3

    keys = credentials or {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    kwargs: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": keys["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": keys["AWS_SECRET_ACCESS_KEY"],
    }
    return boto3.client("s3", **kwargs), boto3.client("ssm", **kwargs), boto3.client("sqs", **kwargs)


def save(run_dir: Path, endpoint: str, credentials: dict[str, str] | None = None) -> SnapshotSummary:
    """Write the snapshot of moto's state at ``endpoint`` under ``run_dir`` (atomic swap); ``credentials``
    (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``) are the stack's operator's when IAM is enforced."""
    started = time.perf_counter()
    s3, ssm, sqs = _clients(endpoint, credentials)
    final = snapshot_dir(run_dir)
    work = final.with_name(final.name + ".new")
    shutil.rmtree(work, ignore_errors=True)
    (work / "blobs").mkdir(parents=True)

    listed: list[tuple[str, str]] = []
    for bucket in s3.list_buckets().get("Buckets", []):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            listed.extend((bucket["Name"], item["Key"]) for item in page.get("Contents", []))

    def fetch(numbered: tuple[int, tuple[str, str]]) -> dict[str, Any]:
        number, (bucket, key) = numbered
        response = s3.get_object(Bucket=bucket, Key=key)
        data = response["Body"].read()
        (work / "blobs" / str(number)).write_bytes(data)
        return {
            "bucket": bucket,
            "key": key,
            "blob": str(number),
            "size": len(data),
            "content_type": response.get("ContentType") or "binary/octet-stream",
            "metadata": response.get("Metadata") or {},
        }

    with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        objects = list(pool.map(fetch, enumerate(listed)))
    buckets = sorted({item["Name"] for item in s3.list_buckets().get("Buckets", [])})

    parameters: list[dict[str, str]] = []
    for page in ssm.get_paginator("describe_parameters").paginate():
        names = [p["Name"] for p in page.get("Parameters", [])]
        for start in range(0, len(names), 10):
            found = ssm.get_parameters(Names=names[start : start + 10], WithDecryption=True)["Parameters"]
            parameters.extend({"Name": p["Name"], "Value": p["Value"], "Type": p["Type"]} for p in found)

    messages: dict[str, list[dict[str, Any]]] = {}
    for url in sqs.list_queues().get("QueueUrls", []):
        name = url.rsplit("/", 1)[-1]
        seen: dict[str, dict[str, Any]] = {}
        while True:
            # A long visibility: moto stops right after, so nothing is received twice meanwhile.
            batch = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=600,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not batch:
                break
            for m in batch:
                seen[m["MessageId"]] = {"Body": m["Body"], "MessageAttributes": m.get("MessageAttributes", {})}
        if seen:
            messages[name] = list(seen.values())

    summary = SnapshotSummary(
        objects=len(objects),
        bytes=sum(int(o["size"]) for o in objects),
        parameters=len(parameters),
        messages=sum(len(v) for v in messages.values()),
        seconds=time.perf_counter() - started,
        saved_at=time.time(),
    )
    index = {
        "format": FORMAT_VERSION,
        "saved_at": summary.saved_at,
        "buckets": buckets,
        "objects": objects,
        "parameters": parameters,
        "messages": messages,
    }
    (work / "index.json").write_text(json.dumps(index))
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    work.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return summary


def _index(run_dir: Path) -> dict[str, Any] | None:
    path = snapshot_dir(run_dir) / "index.json"
    if not path.exists():
        return None
    index: dict[str, Any] = json.loads(path.read_text())
    if index.get("format") != FORMAT_VERSION:
        raise RuntimeError(f"{path}: snapshot format {index.get('format')}, expected {FORMAT_VERSION}")
    return index


def saved_at(run_dir: Path) -> float | None:
    index = _index(run_dir)
    return float(index["saved_at"]) if index else None


def restore_storage(run_dir: Path, endpoint: str) -> SnapshotSummary | None:
    """Buckets, objects and parameters back into a fresh moto (before the bootstrap); None: no snapshot."""
    index = _index(run_dir)
    if index is None:
        return None
    started = time.perf_counter()
    s3, ssm, _ = _clients(endpoint)
    for bucket in index["buckets"]:
        s3.create_bucket(Bucket=bucket)
    blobs = snapshot_dir(run_dir) / "blobs"

    def put(item: dict[str, Any]) -> None:
        s3.put_object(
            Bucket=item["bucket"],
            Key=item["key"],
            Body=(blobs / item["blob"]).read_bytes(),
            ContentType=item["content_type"],
            Metadata=item["metadata"],
        )

    with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        list(pool.map(put, index["objects"]))
    for parameter in index["parameters"]:
        ssm.put_parameter(Name=parameter["Name"], Value=parameter["Value"], Type=parameter["Type"], Overwrite=True)
    return SnapshotSummary(
        objects=len(index["objects"]),
        bytes=sum(int(o["size"]) for o in index["objects"]),
        parameters=len(index["parameters"]),
        messages=0,
        seconds=time.perf_counter() - started,
        saved_at=float(index["saved_at"]),
    )


def restore_messages(run_dir: Path, endpoint: str) -> int:
    """The messages that waited in queues at ``down``, sent again to the recreated queues (after the
    bootstrap). Consumers are idempotent, so a message that was also handled before is harmless."""
    index = _index(run_dir)
    if index is None:
        return 0
    _, _, sqs = _clients(endpoint)
    sent = 0
    for name, entries in index["messages"].items():
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
        for entry in entries:
            kwargs: dict[str, Any] = {"QueueUrl": url, "MessageBody": entry["Body"]}
            if entry["MessageAttributes"]:
                kwargs["MessageAttributes"] = entry["MessageAttributes"]
            sqs.send_message(**kwargs)
            sent += 1
    return sent


def clear(run_dir: Path) -> bool:
    """Forget the snapshot; True if there was one."""
    existed = snapshot_dir(run_dir).exists()
    for suffix in ("", ".new", ".old"):
        shutil.rmtree(snapshot_dir(run_dir).with_name(snapshot_dir(run_dir).name + suffix), ignore_errors=True)
    return existed
