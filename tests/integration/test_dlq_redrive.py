"""`hitl dlq redrive` on the real stack: dead letters produced for real (a worker that keeps dying,
an SQS consumer that keeps failing) are sent again once the cause is gone, and complete."""

from __future__ import annotations

import json
import os
import signal

import pytest

from hitl.domain.images import content_id
from hitl.stack import procs
from tests.integration.conftest import LocalStack, wait_until
from tests.integration.images import valid_image
from tests.integration.test_worker_reliability import start_worker

pytestmark = pytest.mark.integration


def test_redis_dead_letters_are_redriven_once_and_complete(local_stack: LocalStack) -> None:
    stack = local_stack
    broken, done, dlq = stack.key("test", "broken"), stack.key("test", "fixed-done"), stack.key("dlq", "flaky")
    stack.redis.set(broken, "1")
    worker = start_worker(stack, "flaky", "tests.integration.flaky_worker", {"HITL_MAX_DELIVERIES": "1"})
    try:
        from celery import Celery

        publisher = Celery(broker=stack.env["HITL_REDIS_URL"])
        for marker in ("a", "b"):
            publisher.send_task("hitl.test.crash_until_fixed", kwargs={"marker": marker}, queue="flaky")
        wait_until(lambda: stack.redis.llen(dlq) == 2, 120, "two dead letters")

        stack.redis.delete(broken)  # the cause is fixed
        dry = stack.cli("dlq", "redrive", "--queue", "flaky", "--dry-run").stdout
        assert "2 dead letter(s) would move" in dry
        assert stack.redis.llen(dlq) == 2, "a dry run moves nothing"

        moved = stack.cli("dlq", "redrive", "--queue", "flaky").stdout
        assert "2 dead letter(s) moved" in moved
        assert [line.split()[2] for line in moved.splitlines() if line.startswith("moved ")] == [
            "hitl.test.crash_until_fixed"
        ] * 2
        wait_until(lambda: sorted(stack.redis.lrange(done, 0, -1)) == ["a", "b"], 60, "redriven tasks completed")
        assert stack.redis.llen(dlq) == 0

        again = stack.cli("dlq", "redrive", "--queue", "flaky").stdout
        assert "0 dead letter(s) moved" in again, "idempotent: nothing left to move"
        assert json.loads(stack.cli("dlq", "--json").stdout)["redriven_so_far"]["redis:flaky"] == 2
    finally:
        os.kill(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)


def test_sqs_dead_letters_are_redriven_and_complete(local_stack: LocalStack) -> None:
    stack = local_stack
    group = procs.ProcessGroup(stack.run_dir)
    group.stop("intake")  # the uploads consumer is down: its messages fail instead
    sqs = stack.client("sqs")
    uploads = sqs.get_queue_url(QueueName="hitl-uploads")["QueueUrl"]
    dead = sqs.get_queue_url(QueueName="hitl-uploads-dlq")["QueueUrl"]
    data = valid_image(4242)
    image_id = content_id(data)
    try:
        stack.client("s3").put_object(Bucket=stack.bucket, Key="images_for_detection/redrive.png", Body=data)

        def in_dead_letter_queue() -> bool:
            # A consumer that fails: it receives and never deletes, until SQS gives up on the message.
            sqs.receive_message(QueueUrl=uploads, VisibilityTimeout=0, WaitTimeSeconds=1, MaxNumberOfMessages=10)
            attributes = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["ApproximateNumberOfMessages"])
            return int(attributes["Attributes"]["ApproximateNumberOfMessages"]) >= 1

        wait_until(in_dead_letter_queue, 120, "the upload notification in the dead-letter queue", interval=0.1)
        assert not stack.redis.exists(stack.key("image", image_id))
    finally:
        group.restart("intake")  # as the stack started it: its own metrics port, health files and keys

    moved = stack.cli("dlq", "redrive", "--queue", "hitl-uploads").stdout
    assert "1 dead letter(s) moved" in moved
    wait_until(
        lambda: stack.redis.hget(stack.key("image", image_id), "state") == "detected", 120, "redriven upload detected"
    )
    assert "0 dead letter(s) moved" in stack.cli("dlq", "redrive", "--queue", "hitl-uploads").stdout
