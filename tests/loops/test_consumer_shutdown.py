"""SIGTERM stops an SQS-consuming service at once, not after its long poll, and loses nothing.

The ingestor runs as a subprocess against moto's server, on a queue of its own, with the production
long poll of 20 s: a process that waited out its poll would outlast a grace period of 15 s (the local
stack's) and be killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from hitl import aws
from hitl.settings import Settings
from hitl.stack import procs

ROOT = Path(__file__).resolve().parents[2]


def _start_ingestor(queue: str, log_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    env = {
        **os.environ,
        "HITL_EVENTS_QUEUE": queue,
        "HITL_INGEST_WAIT_SECONDS": "20",
        "HITL_METRICS_PORT": "0",
        "HITL_RUN_DIR": str(log_dir),
    }
    out = log_dir / "ingestor.log"
    with out.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.ingestor"], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    return process, out


def _events(path: Path) -> list[str]:
    names = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            names.append(json.loads(line).get("event", ""))
        except ValueError:
            continue
    return names


def test_sigterm_abandons_the_long_poll_and_the_service_exits_at_once(settings: Settings, tmp_path: Path) -> None:
    sqs = aws.client("sqs")
    queue = f"shutdown-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    process, log = _start_ingestor(queue, tmp_path)
    try:
        procs.wait_until(lambda: "service_started" in _events(log), 60, "the ingestor to start")
        time.sleep(1.0)  # well inside its first 20-second poll
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=15)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    events = _events(log)
    assert status == 0, log.read_text()[-3000:]
    assert took < 5.0, f"stopped {took:.1f} s after SIGTERM"
    assert events.index("service_stopping") < events.index("sqs_poll_abandoned") < events.index("service_stopped")

    sqs.delete_queue(QueueUrl=url)
