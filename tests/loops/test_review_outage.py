"""The review service down while detections are routed, with the stack's real worker processes:
dispatches wait as ``dispatch_pending`` (retried with backoff) and every routed detection gets
exactly one loop once the service is back. (After test_loops_integration, whose loop count this
stack's extra loops would change.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hitl.domain.records import DetectionRecord
from hitl.loops.names import loop_name_for
from hitl.stack import procs
from tests.integration.conftest import LocalStack, wait_until
from tests.integration.images import valid_image, write
from tests.loops.test_loops_integration import a2i, fixed_confidence, index

pytestmark = pytest.mark.integration
SEED_BASE = 78_000


def process_launch(pid: int) -> tuple[list[str], dict[str, str]]:
    """The argv and environment a running process was started with (to start it again alike)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    pairs = Path(f"/proc/{pid}/environ").read_bytes().rstrip(b"\0").split(b"\0")
    env = dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
    return [a.decode() for a in argv], env


def test_dispatches_survive_a_review_service_outage(loops_stack: LocalStack, tmp_path: Path) -> None:
    stack = loops_stack
    group = procs.ProcessGroup(stack.run_dir)
    pid = group.pid("review")
    assert pid is not None
    argv, env = process_launch(pid)
    seeds = [s for s in range(SEED_BASE, SEED_BASE + 400) if fixed_confidence(valid_image(s)) < 30][:4]
    write(tmp_path, {f"o{s}.png": valid_image(s) for s in seeds})
    assert group.stop("review")
    try:
        ids = [r["image_id"] for r in stack.cli_json("submit", str(tmp_path))]
        wait_until(
            lambda: all(index(stack, i).get("loop_status") == "dispatch_pending" for i in ids), 120, "dispatch_pending"
        )
        wait_until(lambda: "task_retry_transient" in stack.log("dispatcher"), 60, "a transient retry logged")
    finally:
        group.start("review", argv, env)
        procs.wait_until(lambda: procs.http_ok(f"{env_url(stack)}/healthz"), 60, "review service back")
    wait_until(lambda: all(index(stack, i).get("loop_status") == "InProgress" for i in ids), 180, "loops started")
    s3 = stack.client("s3")
    client = a2i(stack)
    for image_id in ids:
        record = DetectionRecord.model_validate_json(
            s3.get_object(Bucket=stack.bucket, Key=f"detections/{image_id}.json")["Body"].read()
        )
        name = loop_name_for(record.detection_id)
        assert client.describe_human_loop(HumanLoopName=name)["HumanLoopStatus"] == "InProgress"
        assert index(stack, image_id)["loop_name"] == name
    # Detected, with the record in S3: the index entries are kept for the retention period only.
    assert all(0 < stack.redis.ttl(stack.key("image", i)) <= 30 * 86400 for i in ids)  # type: ignore[operator]
    dead = [json.loads(x) for x in stack.redis.lrange(stack.key("dlq", "dispatch"), 0, -1)]  # type: ignore[union-attr]
    assert not [d for d in dead if d["kwargs"].get("image_id") in ids], "nothing dead-lettered"


def env_url(stack: LocalStack) -> str:
    url: Any = stack.env["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"]
    return str(url).rstrip("/")


def test_repair_rebuilds_the_index_and_loop_state_from_s3_and_the_review_service(
    loops_stack: LocalStack, tmp_path: Path
) -> None:
    """Redis loses the pipeline's keys (not the broker's, not the review service's): ``hitl repair``
    rebuilds them, reports what it changed, and a second run changes nothing."""
    stack = loops_stack
    write(tmp_path, {f"r{s}.png": valid_image(s) for s in range(SEED_BASE + 500, SEED_BASE + 512)})
    ids = [r["image_id"] for r in stack.cli_json("submit", str(tmp_path))]
    wait_until(lambda: all(index(stack, i).get("state") == "detected" for i in ids), 120, "detection")
    wait_until(
        lambda: all(index(stack, i).get("loop_status") in (None, "InProgress") for i in ids)
        and not stack.redis.zcard(stack.key("dispatch", "pending")),
        120,
        "loops started",
    )
    s3 = stack.client("s3")
    records = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="detections/"):
        for item in page.get("Contents", []):
            records.append(DetectionRecord.model_validate_json(
                s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read()
            ))
    assert records
    before = {r.image_id: index(stack, r.image_id) for r in records}
    lines_prefix = f"datasets/{stack.env.get('HITL_LABELED_DATASET', 'human-labels')}/lines/"
    lines = [i["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix=lines_prefix)
             for i in p.get("Contents", [])]
    lost = [
        k for pattern in ("image:*", "images", "loop:*", "loops:*", "dataset:*", "audit:*", "dispatch:*")
        for k in stack.redis.scan_iter(stack.key(pattern))
    ]
    stack.redis.delete(*lost)

    changes = json.loads(stack.cli("repair", "--json").stdout)
    assert changes["images_restored"] == len(records)
    assert changes.get("loops_restored", 0) >= len([r for r in records if r.loop_name])
    assert changes.get("examples_restored", 0) == len(lines)
    for record in records:
        entry = index(stack, record.image_id)
        assert entry["state"] == "detected"
        assert entry.get("loop_status") == before[record.image_id].get("loop_status"), record.image_id
    completed_with_line = [n.rsplit("/", 1)[1].removesuffix(".json") for n in lines]
    assert all(stack.redis.exists(stack.key("loop", n, "applied", "Completed")) for n in completed_with_line)
    again = json.loads(stack.cli("repair", "--json").stdout)
    assert again == {}, "idempotent: a second run changes nothing"
