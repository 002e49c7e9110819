"""Start a training check as soon as enough new labels exist, instead of waiting for the next poll."""

from __future__ import annotations

import time

from hitl.adapters.redis_index import connect
from hitl.params import ParameterStore
from hitl.settings import Settings

CHECK_TASK = "hitl.train.check"
DEBOUNCE_SECONDS = 30

_params: ParameterStore | None = None


def on_label_added(settings: Settings, untrained: int) -> bool:
    """Send one check when ``untrained`` reaches Minimum-Untrained-Images (debounced); True if sent."""
    global _params
    _params = _params or ParameterStore(settings)
    snapshot = _params.snapshot()
    if not snapshot["Enable-Automatic-Training"] or untrained < int(snapshot["Minimum-Untrained-Images"]):
        return False
    if not connect(settings.redis_url).set(settings.key("training", "triggered"), "1", nx=True, ex=DEBOUNCE_SECONDS):
        return False
    from hitl.celery_app import app

    app.send_task(CHECK_TASK, kwargs={"reason": "threshold", "enqueued_at": time.time()}, queue="train")
    return True
