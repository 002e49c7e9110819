"""A real worker's /metrics: every task's failure series exists (at 0) before its first failure.

Prometheus's ``rate()`` sees only increases between samples: a failure series born at 1 never shows
a rate, so the "Task failure ratio" panel and ``HitlTaskFailureRateHigh`` would miss the failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from hitl.stack import procs

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TASK = "hitl.test.crash_or_record"
FAILURE = f'hitl_task_duration_seconds_count{{outcome="failure",task="{TASK}"}}'


def failure_count(port: int) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(FAILURE + " "):
                return float(line.split()[-1])
    return None


@pytest.fixture
def worker(redis_url: str, tmp_path: Path) -> Iterator[int]:
    port = procs.free_port()
    env = {
        **os.environ,
        "HITL_REDIS_URL": redis_url,
        "HITL_KEY_PREFIX": "hitlmetrics",
        "HITL_METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "HITL_READY_FILE": str(tmp_path / "ready"),
        "HITL_HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
    }
    with (tmp_path / "worker.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.poison_worker"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    try:
        procs.wait_until(lambda: (tmp_path / "ready").exists() or proc.poll() is not None, 60, "worker ready")
        assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_a_tasks_failure_series_starts_at_zero_so_its_first_failure_is_a_rate(worker: int, redis_url: str) -> None:
    assert failure_count(worker) == 0.0, "the failure series exists before any task ran"
    # An argument the task does not take: it fails (and is dead-lettered) without killing the worker.
    bad = {"marker": "m", "crash": False, "not_an_argument": 1}
    Celery(broker=redis_url).send_task(TASK, kwargs=bad, queue="poison")
    procs.wait_until(lambda: failure_count(worker) == 1.0, 30, "the failure counted")
