"""Periodic and operator-facing paths on the real parts: the stale-detection re-send (real Redis as the
Celery broker) and the training notices (moto's EventBridge routing them to an SQS queue)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import redis as redis_lib
from prometheus_client import REGISTRY

from hitl import aws
from hitl.adapters.redis_index import ImageIndex
from hitl.settings import Settings, get_settings
from hitl.training import notices

pytestmark = pytest.mark.integration


@pytest.fixture
def stale_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The detector task's settings on a key prefix of its own; the broker's ``detect`` list empty."""
    monkeypatch.setenv("HITL_KEY_PREFIX", f"stale-{uuid.uuid4().hex[:8]}")
    get_settings.cache_clear()
    local = get_settings()
    client = redis_lib.Redis.from_url(local.redis_url)
    client.delete("detect")
    yield local
    client.delete("detect")
    for key in client.scan_iter(f"{local.key_prefix}:*"):
        client.delete(key)
    get_settings.cache_clear()


def queued_detect_kwargs(client: redis_lib.Redis) -> list[dict[str, object]]:
    """The kwargs of every task message waiting in the broker's ``detect`` list."""
    found = []
    for raw in client.lrange("detect", 0, -1):
        message = json.loads(raw)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":  # a message from before compact bodies
            body = base64.b64decode(body)
        body = json.loads(body)
        assert message["headers"]["task"] == "hitl.detect"
        found.append(body[1])
    return found


def run_requeue_stale(settings: Settings) -> int:
    """The beat task's body in a process of its own, so its Celery app's broker is this test's Redis."""
    code = "from services.detector.tasks import requeue_stale; print(requeue_stale())"
    env = {**os.environ, "HITL_REDIS_URL": settings.redis_url, "HITL_KEY_PREFIX": settings.key_prefix}
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.strip().splitlines()[-1])


def test_requeue_stale_resends_only_images_queued_too_long(stale_env: Settings) -> None:
    index = ImageIndex(stale_env)
    now = time.time()
    ages = {"lost": 700.0, "recent": 30.0, "done": 700.0, "ancient": 8 * 24 * 3600.0}
    for image_id, age in ages.items():
        assert index.claim(image_id, f"s3://{stale_env.bucket}/images/{image_id}.png", "cli")
        index.redis.zadd(stale_env.key("images"), {image_id: now - age})
        # Sent long ago under a task id the broker no longer holds: its message was lost.
        index.enqueued(image_id, f"gone-{image_id}", now - age)
    index.update("done", state="detected")

    assert run_requeue_stale(stale_env) == 1
    sent = queued_detect_kwargs(index.redis)
    assert len(sent) == 1
    assert sent[0]["image_id"] == "lost"
    assert sent[0]["uri"] == f"s3://{stale_env.bucket}/images/lost.png"
    assert sent[0]["source"] == "cli"
    # The re-sent message is in the broker now: the image waits its turn and is not sent again.
    assert run_requeue_stale(stale_env) == 0
    assert len(queued_detect_kwargs(index.redis)) == 1


@pytest.fixture
def notices_queue(settings: Settings) -> Iterator[tuple[Settings, str]]:
    """A bus, a rule for the training notices' source and a queue as its target, all of this test."""
    suffix = uuid.uuid4().hex[:8]
    local = settings.model_copy(update={"event_bus": f"notices-{suffix}", "training_event_source": "hitl.training"})
    events, sqs = aws.client("events"), aws.client("sqs")
    events.create_event_bus(Name=local.event_bus)
    url = sqs.create_queue(QueueName=f"notices-{suffix}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"notices-{suffix}"
    events.put_rule(
        Name=rule, EventBusName=local.event_bus, EventPattern=json.dumps({"source": [local.training_event_source]})
    )
    events.put_targets(Rule=rule, EventBusName=local.event_bus, Targets=[{"Id": "queue", "Arn": arn}])
    yield local, url
    events.remove_targets(Rule=rule, EventBusName=local.event_bus, Ids=["queue"])
    events.delete_rule(Name=rule, EventBusName=local.event_bus)
    events.delete_event_bus(Name=local.event_bus)
    sqs.delete_queue(QueueUrl=url)


def runs(outcome: str) -> float:
    return REGISTRY.get_sample_value("hitl_training_runs_total", {"outcome": outcome}) or 0.0


def receive_all(url: str, expected: int) -> list[dict[str, object]]:
    sqs, found = aws.client("sqs"), []
    deadline = time.monotonic() + 20
    while len(found) < expected:
        assert time.monotonic() < deadline, f"{len(found)} of {expected} notices arrived"
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def test_training_notices_reach_the_queue_and_count_finished_runs(notices_queue: tuple[Settings, str]) -> None:
    local, url = notices_queue
    before = {o: runs(o) for o in ("promoted", "rejected", "failed", "started")}
    notices.publish(local, "started", labels=12)
    notices.publish(local, "deployed", version="v0003", f1=0.91, serving_f1=0.88)
    notices.publish(local, "rejected", version="v0004", f1=0.5, reason="below the minimum")
    envelopes = receive_all(url, 3)
    assert {e["detail-type"] for e in envelopes} == {notices.DETAIL_TYPE}
    assert {e["source"] for e in envelopes} == {local.training_event_source}
    details = {e["detail"]["stage"]: e["detail"] for e in envelopes}  # type: ignore[index]
    assert set(details) == {"started", "deployed", "rejected"}
    assert details["started"]["labels"] == 12
    assert (details["deployed"]["version"], details["deployed"]["f1"]) == ("v0003", 0.91)
    assert details["rejected"]["reason"] == "below the minimum"
    assert all(d["at"] for d in details.values())
    # Finished runs are counted by outcome (a deployment as "promoted"); a start is not a run.
    assert runs("promoted") == before["promoted"] + 1
    assert runs("rejected") == before["rejected"] + 1
    assert runs("failed") == before["failed"]
    assert runs("started") == 0.0


def test_a_notice_that_cannot_be_sent_never_fails_the_run(settings: Settings) -> None:
    missing_bus = settings.model_copy(update={"event_bus": f"no-such-bus-{uuid.uuid4().hex[:8]}"})
    before = runs("failed")
    notices.publish(missing_bus, "failed", reason="dataset rejected")
    assert runs("failed") == before + 1
