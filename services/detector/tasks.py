"""The ``detect`` queue's tasks."""

from __future__ import annotations

import time
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
STALE_AFTER_SECONDS = 600
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
            # Never dead-lettered for want of a model: a human labels it instead (cold start).
            log.warning("model_not_ready_cold_start", image_id=image_id, retries=self.request.retries)
            request.cold_start = True
            detector().run(request)
            return
        log.warning("model_not_ready", image_id=image_id, retries=self.request.retries, error=str(exc))
        raise self.retry(countdown=min(60, 2**self.request.retries)) from exc


@app.task(name="hitl.detect.requeue_stale", base=PipelineTask, bind=True)
def requeue_stale(self: Any) -> int:
    """Re-send detection for images accepted long ago and still queued (a lost message)."""
    settings = get_settings()
    index = ImageIndex(settings)
    if index.redis.llen("detect"):
        # Still a backlog: a queued image may just be waiting its turn; resending would double it.
        return 0
    now = time.time()
    stale = index.redis.zrangebyscore(settings.key("images"), now - STALE_HORIZON_SECONDS, now - STALE_AFTER_SECONDS)
    requeued = 0
    for member in stale:  # type: ignore[union-attr]
        image_id = str(member)
        entry = index.get(image_id)
        if entry.get("state") == "queued" and entry.get("uri"):
            app.send_task(
                DETECT_TASK,
                kwargs={
                    "image_id": image_id,
                    "uri": entry["uri"],
                    "source": entry.get("source", "api"),
                    "enqueued_at": now,
                },
                queue="detect",
            )
            requeued += 1
    if requeued:
        log.warning("stale_detections_requeued", count=requeued)
    return requeued
