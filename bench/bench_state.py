"""Local state across `make down` / `make up`: the stack's snapshot (hitl.stack.persist) against
moto's own recorder, on the same history.

History: N images uploaded (as submissions and their records), the SSM parameters, and the queue
traffic of processing them (one SQS message sent, received and deleted per image, as intake and the
ingestor do). Measured: save and restore seconds and the size on disk for the snapshot; recording
size and replay seconds for the recorder. Writes bench/results/state.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import numpy as np

from hitl.stack import persist, procs

RESULTS = Path(__file__).resolve().parent / "results" / "state.json"


def start_moto(folder: Path, recording: Path | None = None) -> tuple[procs.ProcessGroup, str]:
    group = procs.ProcessGroup(folder)
    port = procs.free_port()
    env = {"MOTO_RECORDER_FILEPATH": str(recording)} if recording else {}
    group.start("moto", [procs.venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)], env)
    url = f"http://127.0.0.1:{port}"
    procs.wait_until(lambda: procs.http_ok(f"{url}/moto-api/"), 30, "moto")
    return group, url


def clients(url: str) -> tuple[object, object, object]:
    kw = {"endpoint_url": url, "region_name": "us-east-1", "aws_access_key_id": "x", "aws_secret_access_key": "x"}
    return boto3.client("s3", **kw), boto3.client("ssm", **kw), boto3.client("sqs", **kw)


def history(url: str, images: int, image_bytes: int) -> None:
    s3, ssm, sqs = clients(url)
    s3.create_bucket(Bucket="bench-state")  # type: ignore[attr-defined]
    queue = sqs.create_queue(QueueName="bench-uploads")["QueueUrl"]  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    for i in range(20):
        ssm.put_parameter(Name=f"/hitl/p{i}", Value=str(i), Type="String", Overwrite=True)  # type: ignore[attr-defined]
    for i in range(images):
        s3.put_object(Bucket="bench-state", Key=f"images/{i:06d}.png", Body=rng.bytes(image_bytes))  # type: ignore[attr-defined]
        s3.put_object(Bucket="bench-state", Key=f"detections/{i:06d}.json", Body=b"{}" * 200)  # type: ignore[attr-defined]
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"key": i}))  # type: ignore[attr-defined]
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1).get("Messages", []):  # type: ignore[attr-defined]
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])  # type: ignore[attr-defined]


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=3600).read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--image-bytes", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-state-"))
    result: dict[str, object] = {"images": args.images, "image_bytes": args.image_bytes}
    try:
        group, url = start_moto(work / "a")
        history(url, args.images, args.image_bytes)
        saved = persist.save(work, url)
        group.stop_all()
        group, url = start_moto(work / "b")
        restored = persist.restore_storage(work, url)
        group.stop_all()
        size = sum(p.stat().st_size for p in persist.snapshot_dir(work).rglob("*") if p.is_file())
        result["snapshot"] = {
            "save_seconds": round(saved.seconds, 2),
            "restore_seconds": round(restored.seconds, 2) if restored else None,
            "bytes_on_disk": size,
            "objects": saved.objects,
        }

        recording = work / "recording.jsonl"
        group, url = start_moto(work / "c", recording)
        post(f"{url}/moto-api/recorder/start-recording")
        started = time.perf_counter()
        history(url, args.images, args.image_bytes)
        record_seconds = time.perf_counter() - started
        post(f"{url}/moto-api/recorder/stop-recording")
        group.stop_all()
        group, url = start_moto(work / "d", recording)
        started = time.perf_counter()
        post(f"{url}/moto-api/recorder/replay-recording")
        replay_seconds = time.perf_counter() - started
        s3, _, _ = clients(url)
        replayed = s3.list_objects_v2(Bucket="bench-state").get("KeyCount", 0)  # type: ignore[attr-defined]
        group.stop_all()
        result["recorder"] = {
            "history_seconds": round(record_seconds, 2),
            "replay_seconds": round(replay_seconds, 2),
            "bytes_on_disk": recording.stat().st_size if recording.exists() else 0,
            "objects_after_replay": replayed,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    main()
