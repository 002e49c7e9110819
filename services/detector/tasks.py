"""The ``detect`` queue's tasks."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from hitl.adapters.detection import ModelNotReady, create_backend
from hitl.adapters.redis_index import ImageIndex
from hitl.celery_app import PipelineTask, app
from hitl.detect import Detector, DetectRequest
from hitl.logs import get_logger
from hitl.params import ParameterStore
from hitl.settings import get_settings
from hitl.submit import DETECT_TASK

log = get_logger("hitl.detector")
MODEL_WAIT_RETRIES = 10
STALE_HORIZON_SECONDS = 7 * 24 * 3600

_detector: Detector | None = None


def detector() -> Detector:
    """One per worker process, created after fork (the model and clients are per process)."""
    global _detector
    if _detector is None:
        settings = get_settings()
        _detector = Detector(settings, create_backend(settings), ParameterStore(settings), app)
    return _detector


@app.task(name=DETECT_TASK, base=PipelineTask, bind=True, max_retries=MODEL_WAIT_RETRIES)
def detect(
    self: Any,
    image_id: str,
    uri: str,
    source: str = "api",
    enqueued_at: float | None = None,
    annotate: bool = False,
) -> None:
    try:
        request = DetectRequest(image_id=image_id, uri=uri, source=source, enqueued_at=enqueued_at, annotate=annotate)
        detector().run(request)
    except ModelNotReady as exc:
        if self.request.retries >= MODEL_WAIT_RETRIES:
            ImageIndex(get_settings()).update(image_id, state="dead_lettered", reason="model_not_ready")
            self._dead_letter("detect", [], {"image_id": image_id, "uri": uri, "source": source}, self.request.retries)
            return
        log.warning("model_not_ready", image_id=image_id, retries=self.request.retries, error=str(exc))
        raise self.retry(countdown=min(60, 2**self.request.retries)) from exc


REQUEUE_PAGE = 1000


def broker_task_ids(redis: Any, queue: str = "detect") -> set[str]:
    """Ids of the tasks the broker still holds for ``queue``: waiting in its lists (every priority)
    or delivered and not yet acknowledged (kombu's ``unacked`` hash, which includes retries waiting
    for their countdown). Read in pages, so a long backlog costs memory for ids only."""
    ids: set[str] = set()

    def add(raw: str) -> None:
        try:
            message = json.loads(raw)
            if isinstance(message, list):  # unacked entries: [message, exchange, routing_key]
                if len(message) > 2 and message[2] != queue:
                    return
                message = message[0]
            headers = message.get("headers") or {}
            task_id = headers.get("id") or (message.get("properties") or {}).get("correlation_id")
        except (ValueError, AttributeError, TypeError):
            return
        if task_id:
            ids.add(str(task_id))

    for key in [queue, *redis.scan_iter(match=f"{queue}\x06\x16*")]:
        start = 0
        while True:
            chunk = redis.lrange(key, start, start + REQUEUE_PAGE - 1)
            if not chunk:
                break
            for raw in chunk:
                add(raw)
            start += len(chunk)
    for _, raw in redis.hscan_iter("unacked", count=REQUEUE_PAGE):
        add(raw)
    return ids


@app.task(name="hitl.detect.requeue_stale", base=PipelineTask, bind=True, retry_transient=False)
def requeue_stale(self: Any, enqueued_at: float | None = None) -> int:
    """Re-send detection for images still ``queued`` whose message the broker no longer holds
    (lost in a crash or a Redis restart), once their enqueue is older than
    ``requeue_stale_after_seconds``. Works under a backlog: each image is judged by its own enqueue
    time and the broker's content, not the queue length. ``dead_lettered`` images are never re-sent.
    Also trims the ``images`` sorted set to the retention period."""
    settings = get_settings()
    index = ImageIndex(settings)
    now = time.time()
    images_key = settings.key("images")
    index.redis.zremrangebyscore(images_key, "-inf", now - settings.retention_days * 86400)
    in_broker: set[str] | None = None  # read once, and only when a candidate needs it
    requeued = 0
    offset = 0
    cutoff = now - settings.requeue_stale_after_seconds
    while True:
        page = index.redis.zrangebyscore(
            images_key, now - STALE_HORIZON_SECONDS, cutoff, start=offset, num=REQUEUE_PAGE
        )
        if not page:
            break
        offset += len(page)
        for member in page:  # type: ignore[union-attr]
            image_id = str(member)
            entry = index.get(image_id)
            if entry.get("state") != "queued" or not entry.get("uri"):
                continue
            sent_at = float(entry.get("enqueued_at") or entry.get("submitted_at") or 0)
            if sent_at > cutoff:
                continue
            if in_broker is None:
                in_broker = broker_task_ids(index.redis)
            if entry.get("task_id") and entry["task_id"] in in_broker:
                continue  # waiting its turn in a backlog, or being worked on
            task_id = str(uuid.uuid4())
            app.send_task(
                DETECT_TASK,
                kwargs={
                    "image_id": image_id, "uri": entry["uri"], "source": entry.get("source", "api"), "enqueued_at": now
                },
                queue="detect",
                task_id=task_id,
            )
            index.enqueued(image_id, task_id, now)
            requeued += 1
            log.warning("stale_detection_requeued", image_id=image_id, enqueued_at=sent_at)
    if requeued:
        log.warning("stale_detections_requeued", count=requeued)
    return requeued
