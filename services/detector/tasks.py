"""The ``detect`` queue's tasks."""

from __future__ import annotations

from typing import Any

from hitl import requeue as stale
from hitl.adapters.detection import ModelNotReady, create_backend
from hitl.celery_app import PipelineTask, app
from hitl.detect import UNREAD, Detector, DetectRequest
from hitl.logs import get_logger
from hitl.params import ParameterStore
from hitl.settings import get_settings
from hitl.submit import DETECT_TASK

log = get_logger("hitl.detector")
MODEL_WAIT_RETRIES = 10

_detector: Detector | None = None


def detector() -> Detector:
    """One per worker process, created after fork (the model and clients are per process)."""
    global _detector
    if _detector is None:
        settings = get_settings()
        _detector = Detector(settings, create_backend(settings), ParameterStore(settings), app)
    return _detector


class DetectTask(PipelineTask):  # type: ignore[misc]
    abstract = True

    def preflight(self, pipe: Any, kwargs: dict[str, Any]) -> None:
        # Whether the image is done already, read with the delivery count: one round trip fewer.
        if isinstance(kwargs.get("image_id"), str):
            detector().index.read_state(pipe, kwargs["image_id"])


@app.task(name=DETECT_TASK, base=DetectTask, bind=True, max_retries=MODEL_WAIT_RETRIES)
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
        read = getattr(self.request, "preflight", None)  # the state read with the delivery count
        detector().run(request, read[0] if read else UNREAD)
    except ModelNotReady as exc:
        if self.request.retries >= MODEL_WAIT_RETRIES:
            # Never dead-lettered for want of a model: a human labels it instead (cold start).
            log.warning("model_not_ready_cold_start", image_id=image_id, retries=self.request.retries)
            request.cold_start = True
            detector().run(request)
            return
        log.warning("model_not_ready", image_id=image_id, retries=self.request.retries, error=str(exc))
        raise self.retry(countdown=min(60, 2**self.request.retries)) from exc


@app.task(name="hitl.detect.requeue_stale", base=PipelineTask, bind=True, retry_transient=False)
def requeue_stale(self: Any, enqueued_at: float | None = None) -> int:
    """Re-send detection for images still queued whose message was lost (see :mod:`hitl.requeue`)."""

    def send(task_id: str, kwargs: dict[str, Any]) -> None:
        app.send_task(DETECT_TASK, kwargs=kwargs, queue="detect", task_id=task_id)

    return stale.requeue_stale(get_settings(), send)
