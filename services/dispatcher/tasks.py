"""The ``dispatch`` queue's task: start the human loop of one routed detection."""

from __future__ import annotations

from typing import Any

from hitl.celery_app import PipelineTask, app
from hitl.detect import DISPATCH_TASK
from hitl.logs import get_logger
from hitl.loops.dispatch import Dispatcher, release_waiting
from hitl.loops.ingest import celery_redispatch
from hitl.settings import get_settings

log = get_logger("hitl.dispatcher")

_dispatcher: Dispatcher | None = None


def dispatcher() -> Dispatcher:
    """One per worker process, created after fork."""
    global _dispatcher
    if _dispatcher is None:
        _dispatcher = Dispatcher(get_settings())
    return _dispatcher


class DispatchTask(PipelineTask):
    """Shows ``dispatch_pending`` while transient failures are retried, ``dead_lettered`` after."""

    abstract = True

    def on_transient(self, kwargs: dict[str, Any], exc: BaseException) -> None:
        image_id = kwargs.get("image_id")
        if isinstance(image_id, str):
            dispatcher().status.pending(image_id)


# Celery's per-worker token bucket keeps StartHumanLoop under the account's quota. Transient
# failures (review service down, timeouts, 5xx, throttling, S3 unreadable, a record not yet
# visible) are retried by the base class within ``task_retry_budget``, then dead-lettered.
@app.task(
    name=DISPATCH_TASK, base=DispatchTask, bind=True,
    rate_limit=get_settings().dispatch_rate_limit or None,
)
def start_loop(
    self: Any, image_id: str, detection_id: str, enqueued_at: float | None = None, attempt: int = 0
) -> str | None:
    return dispatcher().dispatch(image_id, detection_id, attempt).loop_name


RELEASE_TASK = "hitl.dispatch.release_waiting"


@app.task(name=RELEASE_TASK)
def release_waiting_reviews() -> int:
    """From beat: the best images waiting for the review budget are dispatched as slots free up."""
    return len(release_waiting(dispatcher(), celery_redispatch))
