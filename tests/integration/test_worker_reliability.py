"""Worker reliability on the real Redis with real worker processes: SIGTERM, poison tasks, and the
compact task messages a backlog is made of."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl.stack import procs
from tests.integration.conftest import LocalStack, wait_until
from tests.integration.images import valid_image, write

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def start_worker(stack: LocalStack, name: str, module: str, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    log = open(stack.run_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115
    env = {
        **stack.env,
        "HITL_HEARTBEAT_FILE": str(stack.run_dir / "health" / name / "heartbeat"),
        "HITL_READY_FILE": str(stack.run_dir / "health" / name / "ready"),
        **extra,
    }
    proc = subprocess.Popen([sys.executable, "-m", module], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    ready = stack.run_dir / "health" / name / "ready"
    procs.wait_until(lambda: ready.exists() or proc.poll() is not None, 60, f"{name} ready")
    assert proc.poll() is None, stack.log(name)[-3000:]
    return proc


def drain_and_check_records(
    stack: LocalStack, worker: subprocess.Popen[bytes], name: str, ids: list[str], seconds: float
) -> None:
    """Wait until ``worker`` has detected every image (its log tail on timeout), stop it, and check that
    each image's record is in S3."""
    try:
        try:
            wait_until(
                lambda: all(stack.redis.hget(stack.key("image", i), "state") == "detected" for i in ids),
                seconds,
                f"{name} to detect {len(ids)} images",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stack.log(name)[-3000:]}") from None
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    s3 = stack.client("s3")
    for image_id in ids:
        s3.head_object(Bucket=stack.bucket, Key=f"detections/{image_id}.json")


@pytest.fixture
def stopped_detector(local_stack: LocalStack) -> Iterator[LocalStack]:
    """The stack's detector stopped (a test starts its own), then restored."""
    group = procs.ProcessGroup(local_stack.run_dir)
    group.stop("detector")
    yield local_stack
    group.start("detector", [sys.executable, "-m", "services.detector"], _detector_env(local_stack))


def _detector_env(stack: LocalStack) -> dict[str, str]:
    env = dict(stack.env)
    env["HITL_HEARTBEAT_FILE"] = str(stack.run_dir / "health" / "detector" / "heartbeat")
    env["HITL_READY_FILE"] = str(stack.run_dir / "health" / "detector" / "ready")
    return env


def test_sigterm_mid_task_loses_no_task(stopped_detector: LocalStack, tmp_path: Path) -> None:
    stack = stopped_detector
    slow = {"HITL_FIXED_BACKEND_LATENCY_MS": "1500", "HITL_WORKER_CONCURRENCY": "2"}
    worker = start_worker(stack, "detector-slow", "services.detector", slow)
    files = {f"s{i}.png": valid_image(7000 + i) for i in range(8)}
    write(tmp_path / "slow", files)
    ids = [r["image_id"] for r in stack.cli_json("submit", str(tmp_path / "slow"))]

    # Wait until the worker is mid-task (two images taken, none finished), then SIGTERM it.
    def busy() -> bool:
        log = stack.log("detector-slow")
        return log.count("hitl.detect[") >= 2 and "image_detected" not in log

    procs.wait_until(busy, 30, "worker busy")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, "warm shutdown finishes the running tasks and exits cleanly"
    finished_before_restart = [i for i in ids if stack.redis.hget(stack.key("image", i), "state") == "detected"]
    assert len(finished_before_restart) >= 2, "tasks running at SIGTERM were completed, not abandoned"

    replacement = start_worker(stack, "detector-slow2", "services.detector", {"HITL_FIXED_BACKEND_LATENCY_MS": "10"})
    drain_and_check_records(stack, replacement, "detector-slow2", ids, 60)


def test_a_task_that_keeps_killing_its_worker_is_dead_lettered(local_stack: LocalStack) -> None:
    stack = local_stack
    worker = start_worker(stack, "poison", "tests.integration.poison_worker", {"HITL_MAX_DELIVERIES": "2"})
    try:
        from celery import Celery

        from hitl.celery_app import create_app
        from hitl.settings import Settings

        # The pipeline's compact messages, redelivered after each crash; and Celery's full ones.
        publisher = create_app(Settings(redis_url=stack.env["HITL_REDIS_URL"]))
        plain = Celery(broker=stack.env["HITL_REDIS_URL"])
        publisher.send_task("hitl.test.crash_or_record", kwargs={"marker": "poison", "crash": True}, queue="poison")
        plain.send_task("hitl.test.crash_or_record", kwargs={"marker": "healthy", "crash": False}, queue="poison")
        dlq = stack.key("dlq", "poison")
        deadline = time.monotonic() + 60
        while stack.redis.llen(dlq) == 0 or "healthy" not in stack.redis.lrange(stack.key("test", "done"), 0, -1):
            assert time.monotonic() < deadline, stack.log("poison")[-4000:]
            time.sleep(0.2)
        entry = json.loads(stack.redis.lindex(dlq, 0) or "{}")
        assert entry["task"] == "hitl.test.crash_or_record"
        assert entry["kwargs"]["marker"] == "poison"
        assert entry["deliveries"] == 3
        assert stack.redis.lrange(stack.key("test", "done"), 0, -1) == ["healthy"]
        # A task sent after the poison one is done only once the worker has moved past it.
        publisher.send_task("hitl.test.crash_or_record", kwargs={"marker": "after", "crash": False}, queue="poison")
        wait_until(lambda: "after" in stack.redis.lrange(stack.key("test", "done"), 0, -1), 60, "the task sent after")
        assert stack.redis.llen(dlq) == 1, "dead-lettered once, not again"
        assert stack.redis.llen("poison") == 0
    finally:
        os.kill(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)


def test_a_backlog_of_compact_detect_messages_is_detected_whole(stopped_detector: LocalStack, tmp_path: Path) -> None:
    """Issue 13: a queued detect task costs Redis at most 1 KB, and a real worker runs it as before."""
    stack = stopped_detector
    files = {f"c{i}.png": valid_image(7100 + i) for i in range(22)}
    write(tmp_path / "compact", files)
    ids = [r["image_id"] for r in stack.cli_json("submit", str(tmp_path / "compact"))]
    queued = [json.loads(raw) for raw in stack.redis.lrange("detect", 0, -1)]
    assert sorted(json.loads(m["body"])[1]["image_id"] for m in queued) == sorted(ids)
    for message in queued:
        # The task, its id and its root; where it was sent from. Nothing a worker would assume anyway.
        assert set(message["headers"]) == {"task", "id", "root_id", "origin"}
        assert message["properties"]["body_encoding"] == "utf-8"
    per_task = int(stack.redis.memory_usage("detect", samples=0) or 0) / len(queued)
    assert per_task <= 1024, f"{per_task:.0f} bytes of Redis per queued detect task"

    worker = start_worker(stack, "detector-compact", "services.detector", {})
    drain_and_check_records(stack, worker, "detector-compact", ids, 90)
