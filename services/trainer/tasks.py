"""The ``train`` queue's tasks: the periodic poll and the training check itself."""

from __future__ import annotations

import json
import time
from typing import Any

from hitl.adapters.redis_index import connect
from hitl.celery_app import PipelineTask, app
from hitl.logs import get_logger
from hitl.params import ParameterStore
from hitl.settings import get_settings
from hitl.training.trainer import Trainer
from hitl.training.trigger import CHECK_TASK

log = get_logger("hitl.trainer")

# Training may take long; the broker's visibility timeout is above this.
TRAIN_SOFT_LIMIT = 3300
TRAIN_HARD_LIMIT = 3500
OUTCOME_TTL = 7 * 24 * 3600


@app.task(
    name=CHECK_TASK, base=PipelineTask, bind=True, soft_time_limit=TRAIN_SOFT_LIMIT, time_limit=TRAIN_HARD_LIMIT
)
def check(self: Any, force: bool = False, reason: str = "poll", enqueued_at: float | None = None) -> dict[str, Any]:
    outcome = Trainer(get_settings()).check(force=force)
    # The outcome has its own ``reason`` (why it trained or not); the check's is its trigger.
    log.info("training_check", trigger=reason, force=force, **outcome.as_dict())
    if self.request.id:
        # `hitl train --wait` reads the outcome of the run it asked for here.
        settings = get_settings()
        connect(settings.redis_url).set(
            settings.key("training", "outcome", self.request.id), json.dumps(outcome.as_dict()), ex=OUTCOME_TTL
        )
    return outcome.as_dict()


@app.task(name="hitl.train.poll", base=PipelineTask, bind=True, retry_transient=False)
def poll(self: Any, enqueued_at: float | None = None) -> bool:
    """Beat sends this every minute; it checks when Automatic-Training-Poll-Frequency has passed,
    so a change of that parameter applies without restarting beat."""
    settings = get_settings()
    minutes = int(ParameterStore(settings).snapshot()["Automatic-Training-Poll-Frequency"])
    redis = connect(settings.redis_url)
    key, now = settings.key("training", "polled_at"), time.time()
    if now - float(redis.get(key) or 0) < minutes * 60:  # type: ignore[arg-type]
        return False
    redis.set(key, str(now))
    app.send_task(CHECK_TASK, kwargs={"reason": "poll", "enqueued_at": time.time()}, queue="train")
    return True
