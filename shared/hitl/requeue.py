"""Re-sending detection for images whose detect message was lost (``hitl.detect.requeue_stale``).

Works under a backlog: each ``queued`` image is judged by its own enqueue time and by whether the
broker still holds its message, never by the queue's length; the ``images`` sorted set is read in
pages. ``dead_lettered`` images are never re-sent (people redrive them).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from hitl.adapters.redis_index import ImageIndex
from hitl.logs import get_logger
from hitl.settings import Settings

log = get_logger("hitl.requeue")
PAGE = 1000
HORIZON_SECONDS = 7 * 24 * 3600
# send(task_id, kwargs): publish one ``hitl.detect`` message with that id.
Send = Callable[[str, dict[str, Any]], None]


def broker_task_ids(redis: Any, queue: str = "detect") -> set[str]:
    """Ids of the tasks the broker still holds for ``queue``: waiting in its lists (every priority)
    or delivered and not yet acknowledged (kombu's ``unacked`` hash, which includes retries waiting
    for their countdown). Read in pages; only the ids are kept."""
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
            chunk = redis.lrange(key, start, start + PAGE - 1)
            if not chunk:
                break
            for raw in chunk:
                add(raw)
            start += len(chunk)
    for _, raw in redis.hscan_iter("unacked", count=PAGE):
        add(raw)
    return ids


def requeue_stale(settings: Settings, send: Send, index: ImageIndex | None = None) -> int:
    """Re-send the ``queued`` images whose enqueue is older than ``requeue_stale_after_seconds`` and
    whose message the broker no longer holds; trims ``images`` to the retention period."""
    index = index or ImageIndex(settings)
    now = time.time()
    images_key = settings.key("images")
    index.redis.zremrangebyscore(images_key, "-inf", now - settings.retention_days * 86400)
    in_broker: set[str] | None = None  # read once, and only when a candidate needs it
    requeued = 0
    offset = 0
    cutoff = now - settings.requeue_stale_after_seconds
    while True:
        page = index.redis.zrangebyscore(images_key, now - HORIZON_SECONDS, cutoff, start=offset, num=PAGE)
        if not page:
            break
        offset += len(page)  # type: ignore[arg-type]
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
            source = entry.get("source", "api")
            kwargs = {"image_id": image_id, "uri": entry["uri"], "source": source, "enqueued_at": now}
            send(task_id, kwargs)
            index.enqueued(image_id, task_id, now)
            requeued += 1
            log.warning("stale_detection_requeued", image_id=image_id, enqueued_at=sent_at)
    if requeued:
        log.warning("stale_detections_requeued", count=requeued)
    return requeued
