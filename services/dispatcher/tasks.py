"""The ``dispatch`` queue's task: start the human loop of one routed detection."""

from __future__ import annotations

from typing import Any

from hitl.celery_app import PipelineTask, app
from hitl.detect import DISPATCH_TASK
from hitl.logs import get_logger
from hitl.loops.dispatch import Dispatcher, DispatchExhausted, RecordMissing
from hitl.settings import get_settings

log = get_logger("hitl.dispatcher")
RECORD_WAIT_RETRIES = 5

_dispatcher: Dispatcher | None = None


def dispatcher() -> Dispatcher:
    """One per worker process, created after fork."""
    global _dispatcher
    if _dispatcher is None:
        _dispatcher = Dispatcher(get_settings())
    return _dispatcher


# Celery's per-worker token bucket keeps StartHumanLoop under the account's quota.
@app.task(
    name=DISPATCH_TASK, base=PipelineTask, bind=True, max_retries=RECORD_WAIT_RETRIES,
    rate_limit=get_settings().dispatch_rate_limit or None,
)
def start_loop(
    self: Any, image_id: str, detection_id: str, enqueued_at: float | None = None, attempt: int = 0
) -> str | None:
    kwargs = {"image_id": image_id, "detection_id": detection_id, "attempt": attempt}
    try:
        return dispatcher().dispatch(image_id, detection_id, attempt).loop_name
    except DispatchExhausted as exc:
        log.error(  # noqa: TRY400 - an expected outcome, not a crash
            "dispatch_exhausted", image_id=image_id, detection_id=detection_id, error=str(exc))
        dispatcher().status.index.update(image_id, loop_status="dead_lettered", answer_outcome="throttled")
        self._dead_letter("dispatch", [], kwargs, self.request.retries + 1)
        return None
    except RecordMissing as exc:
        # The record is written before the task is sent; missing means S3 is behind or lost it.
        if self.request.retries >= RECORD_WAIT_RETRIES:
            self._dead_letter("dispatch", [], kwargs, self.request.retries + 1)
            return None
        raise self.retry(countdown=2 ** self.request.retries) from exc
