"""``make demo`` (``python -m hitl.demo``), shortened to 60 images, end to end.

The demo starts its own local stack, trains and serves v1, streams the images, lets two simulated
reviewers answer, retrains when the labels allow, writes its report and stops the stack. The report's
figures are checked against what the run left in Redis (the stack's Redis is this test session's
private one, so it outlives the stack) and against the demo's own rules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib

from hitl.stack import procs
from tests import redis_dbs
from tests.integration.conftest import _free_port_range

pytestmark = pytest.mark.integration

IMAGES = 60
REDIS_DB = redis_dbs.DEMO
MINIMUM_F1 = 0.7  # the demo's Minimum-F1-Score


@pytest.mark.timeout(1200)
def test_a_short_demo_promotes_and_reports_what_happened(tmp_path: Path, redis_url: str) -> None:
    demo_redis = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))},
        "HITL_DEMO_REDIS_URL": demo_redis,
        "HITL_DEMO_IMAGES": str(IMAGES),
        "HITL_DEMO_STREAM_SECONDS": "20",
        "HITL_DEMO_TEST_IMAGES": "60",
        "HITL_DEMO_METRICS_BASE_PORT": str(_free_port_range(10)),
        "HITL_DEMO_KEEP_STATE": "1",  # the report is checked against the stopped stack's Redis below
    }
    done = subprocess.run(
        [sys.executable, "-m", "hitl.demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1100,
        check=False,
    )
    log_files = (tmp_path / ".run" / "demo" / "logs").glob("*.log")
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in log_files)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{logs}"
    assert "Traceback" not in done.stderr
    report = json.loads((tmp_path / ".run" / "demo-report.json").read_text())
    assert (tmp_path / ".run" / "demo-report.png").stat().st_size > 0

    # The versions: v1 and whatever the trainer made; at least one promoted, exactly one serving, and the
    # gate held: a promoted version reached the minimum F1.
    versions = report["versions"]
    assert [v["version"] for v in versions] == [f"v{i:04d}" for i in range(1, len(versions) + 1)]
    assert sum(v["promoted"] for v in versions) >= 1
    assert sum(v["serving"] for v in versions) == 1
    assert all(v["f1"] is not None and 0.0 <= v["f1"] <= 1.0 for v in versions)
    assert all(v["f1"] >= MINIMUM_F1 for v in versions if v["promoted"])
    assert versions[0]["promoted"], "v1 is trained on the seed set and served"
    assert versions[0]["train_images"] == 10

    # The counts: against the demo's Redis, which the stopped stack leaves behind.
    state = redis_lib.Redis.from_url(demo_redis, decode_responses=True)
    entries = [state.hgetall(key) for key in state.scan_iter("demo:image:*")]
    streamed = [e for e in entries if e.get("source") == "demo"]
    assert report["images_submitted"] == IMAGES == len(streamed)
    assert all(e["state"] == "detected" for e in streamed)
    with_loops = [e for e in streamed if e.get("loop_name")]
    assert report["loops_started"] == len(with_loops) > 0
    assert report["loops_completed"] == sum(e.get("loop_status") == "Completed" for e in streamed)
    assert report["loops_completed"] == report["loops_started"], "the simulated reviewers answer every loop"
    assert report["labels_added"] == state.scard("demo:dataset:human-labels:examples") > 0

    audit = report["audit"]
    tp = fp = 0
    for version in state.smembers("demo:audit:versions"):
        counts = state.hgetall(f"demo:audit:{version}:counts")
        tp, fp = tp + int(counts.get("tp", 0)), fp + int(counts.get("fp", 0))
    assert audit["audited_boxes"] == tp + fp
    if tp + fp:
        assert audit["precision_estimate"] == pytest.approx(tp / (tp + fp))
        assert audit["ci_low"] <= audit["precision_estimate"] <= audit["ci_high"]
    assert audit["true_precision"] is None or 0.0 <= audit["true_precision"] <= 1.0
    # Everything the demo started is stopped: no pid file left, no process of it alive.
    group = procs.ProcessGroup(tmp_path / ".run" / "demo")
    assert group.names() == []

    # What `make demo` does last (without HITL_DEMO_KEEP_STATE): the stack's keys, queues and their
    # exchange bindings go.
    from kombu.transport.redis import Channel

    from hitl.celery_app import QUEUES
    from hitl.settings import Settings
    from hitl.stack import local

    local.reset(tmp_path / ".run" / "demo", Settings(redis_url=demo_redis, key_prefix="demo"))
    assert not list(state.scan_iter("demo:*"))
    assert not any(state.exists(queue) for queue in QUEUES)
    tables = (Channel.keyprefix_queue, Channel.keyprefix_binding_permanent)
    bindings = [m for prefix in tables for key in state.scan_iter(prefix % "*") for m in state.smembers(key)]
    assert not [m for m in bindings if m.split(Channel.sep)[-1] in QUEUES], bindings
    deadlines = state.zrange(Channel.keyprefix_binding_deadlines, 0, -1)
    assert all(state.exists(Channel.keyprefix_queue % e) for e in deadlines), deadlines
