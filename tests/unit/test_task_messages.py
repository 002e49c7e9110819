"""Compact task messages (``hitl.celery_app.CompactAMQP``): what a queued task costs Redis, and that a
worker reads a compact message exactly as it reads Celery's full one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from celery import Celery
from celery.app.amqp import AMQP
from celery.app.task import Context
from celery.utils.saferepr import saferepr
from celery.worker.request import Request

from hitl.celery_app import ABSENT_EQUIVALENT_HEADERS, CompactAMQP, create_app
from hitl.settings import Settings
from hitl.submit import DETECT_TASK, Client

# Issue 13: a queued detect task costs Redis at most 1 KB. Redis keeps a list in 8 KB nodes (the
# default list-max-listpack-size), so that holds when 8 messages fit in one with room to spare.
KB = 1024
QUEUED = 44  # four full nodes of 11

# The worker's tasks are shared with every Celery app once their module is imported (by another
# test), so the stand-in ``detect`` of ``_app`` meets the real one under the same name; either serves
# here, where a message is only decoded, never run.
pytestmark = pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")


@pytest.fixture
def broker(redis_url: str) -> Iterator[tuple[Celery, Settings, str]]:
    """The pipeline's Celery app on the test Redis, its broker keys under a prefix of their own."""
    prefix = f"msg-{uuid.uuid4().hex[:8]}:"
    settings = Settings(redis_url=redis_url, key_prefix=prefix.rstrip(":"))
    app = create_app(settings)
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "global_keyprefix": prefix}
    yield app, settings, prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def test_a_queued_detect_task_costs_redis_at_most_a_kilobyte(broker: tuple[Celery, Settings, str]) -> None:
    app, settings, prefix = broker
    client = Client(settings, celery=app)
    for i in range(QUEUED):
        image_id = f"{i:064x}"
        assert client._claim_and_enqueue(image_id, f"s3://{settings.bucket}/images/{image_id}.png", "api")
    raw = redis.Redis.from_url(settings.redis_url)
    queue = f"{prefix}detect"
    assert raw.llen(queue) == QUEUED
    per_task = int(raw.memory_usage(queue, samples=0) or 0) / QUEUED  # type: ignore[arg-type]
    assert per_task <= KB, f"{per_task:.0f} bytes of Redis per queued detect task"

    message = json.loads(raw.lindex(queue, -1))  # type: ignore[arg-type]  # the first sent (LPUSH)
    headers, properties = message["headers"], message["properties"]
    assert headers["task"] == DETECT_TASK
    assert headers["id"] == headers["root_id"] == client.index.get(f"{0:064x}")["task_id"]
    assert not set(headers) & set(ABSENT_EQUIVALENT_HEADERS), "only headers a worker needs are sent"
    assert not {"reply_to", "correlation_id"} & set(properties)  # no result backend
    # What kombu needs to deliver, acknowledge, restore and requeue it is all there.
    assert properties["delivery_info"] == {"exchange": "", "routing_key": "detect"}
    assert properties["delivery_tag"]
    assert properties["body_encoding"] == "utf-8"
    args, kwargs, embed = json.loads(message["body"])
    assert (args, embed) == ([], {})
    assert kwargs["image_id"] == f"{0:064x}"
    assert kwargs["uri"] == f"s3://{settings.bucket}/images/{0:064x}.png"


def _app(amqp: type[AMQP]) -> Celery:
    app = Celery("messages", broker="memory://", amqp=amqp)
    app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True)

    @app.task(name=DETECT_TASK, shared=False)
    def detect(**kwargs: Any) -> None:
        """Never run: the worker's view of a message is built without running it."""

    return app


def worker_view(amqp: type[AMQP], **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send one task through an app with ``amqp``; return the message's headers and what a worker
    makes of it: its request, the failure log's argument reprs, and the options a retry copies."""
    app = _app(amqp)
    app.send_task(DETECT_TASK, kwargs={"image_id": "b" * 64, "uri": "s3://b/k.png"}, queue="detect", **options)
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        raw = channel._get("detect")
        message = channel.Message(raw, channel=channel)
        request = Request(message, app=app, task=app.tasks[DETECT_TASK], hostname="worker@test")
        _, _, embed = message.payload
        context = Context({**request.request_dict, **embed})
        retry_options = context.as_execution_options()
        # Where a result would go: nowhere here (no result backend), however it is spelt.
        retry_options.pop("reply_to")
        view = {
            "id": request.id,
            "name": request.name,
            "args": request.args,
            "kwargs": request.kwargs,
            "root_id": request.root_id,
            "parent_id": request.parent_id,
            "eta": request.eta,
            "expires": request.expires,
            "time_limits": tuple(request.time_limits),
            "ignore_result": request.ignore_result,
            "retries": request.request_dict.get("retries", 0),
            "routing_key": request.delivery_info["routing_key"],
            # A failure's log line (celery.app.trace): the repr sent, else the arguments' own. (The
            # positional ones, none here, read "[]" rather than the publisher's "()".)
            "logged_kwargs": request.kwargsrepr or saferepr(request.kwargs),
            "retry_options": retry_options,
        }
        return raw["headers"], view


def test_a_worker_reads_a_compact_message_as_the_full_one() -> None:
    task_id = str(uuid.uuid4())
    full_headers, full = worker_view(AMQP, task_id=task_id)
    compact_headers, compact = worker_view(CompactAMQP, task_id=task_id)
    assert compact == full
    assert len(json.dumps(compact_headers)) < len(json.dumps(full_headers)) / 2


def test_what_differs_from_the_defaults_is_always_sent() -> None:
    """A retry's message: an ETA, a retry count, time limits, a parent, an expiry all travel."""
    now = datetime.now(UTC)
    options = {
        "task_id": str(uuid.uuid4()),
        "eta": now + timedelta(seconds=30),
        "expires": now + timedelta(hours=1),
        "retries": 2,
        "time_limit": 60,
        "soft_time_limit": 50,
        "root_id": str(uuid.uuid4()),
        "parent_id": str(uuid.uuid4()),
    }
    full_headers, full = worker_view(AMQP, **options)
    compact_headers, compact = worker_view(CompactAMQP, **options)
    assert compact == full
    for name in ("eta", "expires", "retries", "timelimit", "root_id", "parent_id"):
        assert compact_headers[name] == full_headers[name]
    assert compact["time_limits"] == (60, 50)
    assert compact["retries"] == 2
