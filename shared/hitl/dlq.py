"""Dead letters sent again: the Redis dead-letter lists of Celery tasks and the SQS dead-letter queues.

Redis: each entry is moved atomically (LMOVE) from ``<prefix>:dlq:<queue>`` to
``<prefix>:dlq:<queue>:redriving``, sent to its queue as a new task, then removed from the redriving
list. A crash in between leaves it in the redriving list, and the next redrive sends it again: at
least once, like every delivery here; the tasks themselves are idempotent by the pipeline's keys
(image id, detection id, loop name), so a second delivery changes nothing.

SQS: each message of ``<queue><dlq_suffix>`` is sent to ``<queue>`` and then deleted from the
dead-letter queue (a crash in between: sent again next time, and the consumers are idempotent).

Every moved message is counted in Redis (``<prefix>:dlq:redriven``, per queue) and in the
``hitl_dlq_redriven_total`` metric.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from hitl import aws
from hitl.logs import get_logger
from hitl.settings import Settings

log = get_logger("hitl.dlq")
SQS_REASON = "max_receive_count"  # SQS moved it after maxReceiveCount receives


@dataclass
class Moved:
    queue: str
    kind: str  # redis | sqs
    task: str
    reason: str
    ids: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        ids = " ".join(f"{k}={v}" for k, v in self.ids.items())
        return f"{self.kind}:{self.queue:18} {self.task} ({self.reason}) {ids}".rstrip()


def sqs_queues(settings: Settings) -> list[str]:
    return [settings.uploads_queue, settings.events_queue, settings.notifications_queue]


def entry_reason(entry: dict[str, Any]) -> str:
    return str(entry.get("reason") or "max_deliveries")


def _ids(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in ("image_id", "detection_id", "loop_name") if k in kwargs}


class Redriver:
    def __init__(self, settings: Settings, client: redis.Redis | None = None, celery: Any = None) -> None:
        from hitl.adapters.redis_index import connect

        self.settings = settings
        self.redis = client or connect(settings.redis_url)
        self._celery = celery

    @property
    def celery(self) -> Any:
        if self._celery is None:
            from hitl.celery_app import app

            self._celery = app
        return self._celery

    def redis_queues(self) -> list[str]:
        """Every queue with a dead-letter list (the pipeline's and any other task queue's)."""
        prefix = self.settings.key("dlq", "")
        names = {
            str(k)[len(prefix) :] for k in self.redis.scan_iter(f"{prefix}*") if self.redis.type(k) == "list"
        }  # the lists only: ``dlq:redriven`` is the counters' hash
        return sorted(n for n in names if n and ":" not in n)

    def redrive(self, queue: str | None = None, reason: str | None = None, dry_run: bool = False) -> list[Moved]:
        moved: list[Moved] = []
        for name in self.redis_queues():
            if queue in (None, name):
                moved.extend(self._redis(name, reason, dry_run))
        for name in sqs_queues(self.settings):
            if queue in (None, name) and reason in (None, SQS_REASON):
                moved.extend(self._sqs(name, dry_run))
        if not dry_run:
            for item in moved:
                self.redis.hincrby(self.settings.key("dlq", "redriven"), f"{item.kind}:{item.queue}", 1)
            _count(moved)
        return moved

    def counts(self) -> dict[str, int]:
        raw: dict[str, str] = self.redis.hgetall(self.settings.key("dlq", "redriven"))  # type: ignore[assignment]
        return {k: int(v) for k, v in raw.items()}

    # --- Redis lists -------------------------------------------------------------------------------
    def _redis(self, queue: str, reason: str | None, dry_run: bool) -> Iterator[Moved]:
        source = self.settings.key("dlq", queue)
        pending = self.settings.key("dlq", queue, "redriving")
        if dry_run:
            for raw in [*self.redis.lrange(pending, 0, -1), *self.redis.lrange(source, 0, -1)]:  # type: ignore[misc]
                entry = json.loads(raw)
                if reason in (None, entry_reason(entry)):
                    yield self._moved(queue, entry)
            return
        # Left over from a redrive that stopped half-way: sent (again) first.
        for left_over in list(self.redis.lrange(pending, 0, -1)):  # type: ignore[arg-type]
            yield self._send(queue, pending, str(left_over))
        kept: list[str] = []
        while True:
            moved = self.redis.lmove(source, pending, "RIGHT", "LEFT")
            if moved is None:
                break
            raw = str(moved)
            entry = json.loads(raw)  # type: ignore[arg-type]
            if reason not in (None, entry_reason(entry)):
                # Not asked for: back to the dead-letter list once the list has been walked.
                self.redis.lrem(pending, 1, raw)  # type: ignore[arg-type]
                kept.append(raw)  # type: ignore[arg-type]
                continue
            yield self._send(queue, pending, raw)  # type: ignore[arg-type]
        if kept:
            self.redis.rpush(source, *reversed(kept))

    def _moved(self, queue: str, entry: dict[str, Any]) -> Moved:
        return Moved(queue, "redis", str(entry.get("task")), entry_reason(entry), _ids(entry.get("kwargs") or {}))

    def _send(self, queue: str, pending: str, raw: str) -> Moved:
        from hitl.adapters.redis_index import ImageIndex

        entry = json.loads(raw)
        kwargs = dict(entry.get("kwargs") or {})
        if "enqueued_at" in kwargs:
            kwargs["enqueued_at"] = time.time()
        image_id = kwargs.get("image_id")
        if image_id and ImageIndex(self.settings, self.redis).get(image_id).get("state") == "dead_lettered":
            # Before the send: the task may finish before this line would otherwise run.
            ImageIndex(self.settings, self.redis).update(image_id, state="queued", reason="redriven")
        self.celery.send_task(entry["task"], args=entry.get("args") or [], kwargs=kwargs, queue=queue)
        self.redis.lrem(pending, 1, raw)
        moved = self._moved(queue, entry)
        log.info("dead_letter_redriven", queue=queue, task=moved.task, reason=moved.reason, **moved.ids)
        return moved

    # --- SQS dead-letter queues ------------------------------------------------------------------
    def _sqs(self, queue: str, dry_run: bool) -> Iterator[Moved]:
        sqs = aws.client("sqs")
        try:
            target = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            dlq = sqs.get_queue_url(QueueName=f"{queue}{self.settings.dlq_suffix}")["QueueUrl"]
        except sqs.exceptions.QueueDoesNotExist:
            return
        if dry_run:
            # Counted, not received: a dry run leaves the messages exactly as they were.
            attributes = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
            for _ in range(int(attributes["Attributes"].get("ApproximateNumberOfMessages", 0))):
                yield Moved(queue, "sqs", "message", SQS_REASON)
            return
        seen: set[str] = set()
        while True:
            batch = sqs.receive_message(
                QueueUrl=dlq,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            fresh = [m for m in batch if m["MessageId"] not in seen]
            if not fresh:
                break
            for message in fresh:
                seen.add(message["MessageId"])
                kwargs: dict[str, Any] = {"QueueUrl": target, "MessageBody": message["Body"]}
                if message.get("MessageAttributes"):
                    kwargs["MessageAttributes"] = message["MessageAttributes"]
                sqs.send_message(**kwargs)
                sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
                log.info("dead_letter_redriven", queue=queue, message_id=message["MessageId"])
                yield Moved(queue, "sqs", "message", SQS_REASON, {"message_id": message["MessageId"]})


def _count(moved: list[Moved]) -> None:
    from hitl import metrics

    for item in moved:
        metrics.DLQ_REDRIVEN.labels(item.queue, item.kind).inc()
