"""Poison is contained, and claim/enqueue is safe to repeat: real Redis, moto's server, the review
service over HTTP. Celery tasks run eagerly (``apply``); messages go to the session's private Redis
through a Celery app of its own, never to a shared broker."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from kombu import Queue

from hitl import aws, metrics
from hitl.adapters.redis_index import ImageIndex, connect
from hitl.domain.images import content_id
from hitl.loops.ingest import Ingestor
from hitl.loops.reconcile import Reconciler
from hitl.requeue import requeue_stale
from hitl.settings import Settings, get_settings
from hitl.submit import DETECT_TASK, Client
from tests.integration.images import valid_image
from tests.review.conftest import (  # noqa: F401 - fixtures of the review service
    BUCKET,
    ReviewProcess,
    a2i_client,
    aws_env,
    flow_arn,
    input_content,
    passwords,
    portal_as,
    review_files,
    start_review,
    wait_status,
)

pytestmark = pytest.mark.integration
BOXES = flow_arn("conf-boxes")
ANSWER = {
    "annotatedResult": {
        "boundingBoxes": [{"label": "face", "left": 190, "top": 110, "width": 170, "height": 210}],
        "inputImageProperties": {"width": 640, "height": 480},
    }
}


@pytest.fixture(scope="module")
def review(start_review: Any) -> ReviewProcess:  # noqa: F811
    process: ReviewProcess = start_review("poison")
    return process


def test_one_unappliable_loop_is_recorded_skipped_and_reconciliation_goes_on(
    settings: Settings, aws_env: Any, review: ReviewProcess, portal_as: Any  # noqa: F811
) -> None:
    a2i = a2i_client(review.url)
    names = [f"poison-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    bob = portal_as(review.url, "bob")
    outputs = {}
    for name in names:
        a2i.start_human_loop(
            HumanLoopName=name, FlowDefinitionArn=BOXES, HumanLoopInput={"InputContent": input_content()}
        )
        bob.open_task(name)
        bob.submit(name, ANSWER)
        outputs[name] = wait_status(a2i, name, "Completed")["HumanLoopOutput"]["OutputS3Uri"]
    # The oldest loop's output can no longer be read as JSON (listed first, ascending).
    bucket, _, key = outputs[names[0]][5:].partition("/")
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=b"{this is not json")

    loop_settings = settings.model_copy(
        update={"flow_definition_arn": BOXES, "labeled_dataset": f"ds-{uuid.uuid4().hex[:8]}"}
    )
    ingestor = Ingestor(loop_settings, client=a2i, redispatch=lambda *a: None)
    reconciler = Reconciler(loop_settings, ingestor, client=a2i)
    poisoned = metrics.LOOPS_POISONED.labels("AnswerError")._value.get()
    counts = reconciler.run()
    assert counts["ingested"] >= 2
    assert all(ingestor.registry.applied(name, "Completed") for name in names[1:])
    assert not ingestor.registry.applied(names[0], "Completed")
    assert reconciler.unappliable()[names[0]] == "AnswerError"
    assert metrics.LOOPS_POISONED.labels("AnswerError")._value.get() == poisoned + 1
    # The next run tries it again, records it again, and counts it once.
    assert reconciler.run()["unappliable"] >= 1
    assert metrics.LOOPS_POISONED.labels("AnswerError")._value.get() == poisoned + 1
    # Applied some other way since (an operator fixed its output): no longer listed.
    ingestor.registry.mark_applied(names[0], "Completed")
    reconciler.run()
    assert names[0] not in reconciler.unappliable()


# --- images ---------------------------------------------------------------------------------------


@pytest.fixture
def broker(settings: Settings) -> Iterator[Celery]:
    """A Celery app publishing to the session's private Redis; its ``detect`` list emptied after."""
    app = Celery("hitl-test", broker=settings.redis_url)
    app.conf.update(task_queues=[Queue("detect")], task_serializer="json")  # type: ignore[no-untyped-call]
    yield app
    connect(settings.redis_url).delete("detect", "unacked", "unacked_index")
    app.close()


def queued_image(settings: Settings, seed: int, enqueued_ago: float, task_id: str | None = None) -> str:
    data = valid_image(seed)
    image_id = content_id(data)
    key = f"images/{image_id}.png"
    aws.client("s3").put_object(Bucket=settings.bucket, Key=key, Body=data)
    index = ImageIndex(settings)
    index.redis.delete(index._image_key(image_id))
    index.claim(image_id, settings.s3_uri(key), "test")
    at = time.time() - enqueued_ago
    index.redis.zadd(settings.key("images"), {image_id: at})
    index.update(image_id, submitted_at=f"{at:.3f}")
    if task_id is not None:
        index.enqueued(image_id, task_id, at)
    return image_id


def detect_messages(settings: Settings) -> list[dict[str, Any]]:
    """The detect queue's messages, each with its task body decoded (args, kwargs, embed)."""
    raw = connect(settings.redis_url).lrange("detect", 0, -1)
    messages = []
    for item in raw:  # type: ignore[union-attr]
        message = json.loads(item)
        body = message["body"]
        if message["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body).decode()
        message["body"] = json.loads(body)
        messages.append(message)
    return messages


def test_requeue_stale_works_under_a_backlog(settings: Settings, broker: Celery) -> None:
    # Its own key space: images other tests left queued on this Redis are not part of this backlog.
    settings = settings.model_copy(update={"key_prefix": f"backlog{uuid.uuid4().hex[:8]}"})
    aws.client("s3").create_bucket(Bucket=settings.bucket)
    messages_before = len(detect_messages(settings))
    stale_settings = settings.model_copy(update={"requeue_stale_after_seconds": 60})
    # A backlog: 30 messages waiting, one of them the message of a queued image.
    for _ in range(29):
        broker.send_task("hitl.test.backlog", queue="detect")
    waiting_id = str(uuid.uuid4())
    waiting = queued_image(settings, 901, enqueued_ago=600, task_id=waiting_id)
    broker.send_task(DETECT_TASK, kwargs={"image_id": waiting}, queue="detect", task_id=waiting_id)
    lost = queued_image(settings, 902, enqueued_ago=600, task_id=str(uuid.uuid4()))  # its message is gone
    never_sent = queued_image(settings, 903, enqueued_ago=600)  # claimed, then the submitter crashed
    recent = queued_image(settings, 904, enqueued_ago=5, task_id=str(uuid.uuid4()))
    sent: list[dict[str, Any]] = []

    def send(task_id: str, kwargs: dict[str, Any]) -> None:
        sent.append(kwargs)
        broker.send_task(DETECT_TASK, kwargs=kwargs, queue="detect", task_id=task_id)

    assert requeue_stale(stale_settings, send) == 2
    assert sorted(k["image_id"] for k in sent) == sorted([lost, never_sent])
    assert waiting not in {k["image_id"] for k in sent}
    assert recent not in {k["image_id"] for k in sent}
    # Their new messages are in the broker now: the next run sends nothing.
    assert requeue_stale(stale_settings, send) == 0
    assert len(detect_messages(settings)) == messages_before + 32


def test_a_dead_lettered_image_is_dead_lettered_and_never_requeued(settings: Settings, broker: Celery) -> None:
    import services.detector.tasks as tasks

    aws.client("s3").create_bucket(Bucket=settings.bucket)
    image_id = queued_image(settings, 905, enqueued_ago=600, task_id=str(uuid.uuid4()))
    entry = ImageIndex(settings).get(image_id)
    task_id = str(uuid.uuid4())
    # What a worker killed by this image max_deliveries times leaves behind.
    connect(settings.redis_url).set(settings.key("deliveries", task_id), settings.max_deliveries, ex=600)
    tasks.detect.apply(kwargs={"image_id": image_id, "uri": entry["uri"], "source": "test"}, task_id=task_id)
    state = ImageIndex(settings).get(image_id)
    assert (state["state"], state["reason"]) == ("dead_lettered", "worker_lost")
    raw = connect(settings.redis_url).lrange(settings.key("dlq", "detect"), 0, -1)
    assert [json.loads(x)["reason"] for x in raw if image_id in x] == ["worker_lost"]  # type: ignore[union-attr]
    sent: list[str] = []
    stale_settings = settings.model_copy(update={"requeue_stale_after_seconds": 60})
    requeue_stale(stale_settings, lambda task_id, kwargs: sent.append(kwargs["image_id"]))
    assert image_id not in sent


def test_a_redelivered_notification_of_a_claimed_but_unqueued_image_enqueues_it(
    settings: Settings, broker: Celery
) -> None:
    from services.intake.handler import UploadHandler

    aws.client("s3").create_bucket(Bucket=settings.bucket)
    image_id = queued_image(settings, 906, enqueued_ago=30)  # claimed; the send never happened
    uri = ImageIndex(settings).get(image_id)["uri"]
    client = Client(get_settings(), celery=broker)
    submitted = metrics.IMAGES_SUBMITTED.labels("s3-event")._value.get()
    bucket, _, key = uri[5:].partition("/")
    created = {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}
    notification = {"Records": [created]}
    UploadHandler(client)({"MessageId": "m1", "Body": json.dumps(notification)})
    assert metrics.IMAGES_SUBMITTED.labels("s3-event")._value.get() == submitted + 1, "queued, not a duplicate"
    assert [m for m in detect_messages(settings) if image_id in json.dumps(m)]
    assert ImageIndex(settings).get(image_id)["enqueued_at"]
    # Once enqueued, another redelivery is a duplicate.
    assert client.submit_s3_object(uri, source="s3-event").outcome == "duplicate"
