"""The Celery application every worker and publisher shares: queues, reliability, task base.

Reliability choices (Redis broker, at-least-once):
- ``acks_late`` + ``reject_on_worker_lost``: a task whose worker dies is delivered again;
- prefetch 1: a slow image never holds others hostage in a worker's buffer;
- the visibility timeout is above the longest task and any retry countdown, so Redis does not
  hand live work to a second worker;
- :class:`PipelineTask` counts deliveries that ended without the task returning (the worker was
  killed): after ``max_deliveries`` the message goes to a Redis dead-letter list instead of
  killing workers forever.
"""

from __future__ import annotations

import json
import time
from typing import Any

from celery import Celery, Task
from celery.exceptions import Retry
from kombu.entity import Queue

from hitl import metrics
from hitl.adapters.redis_index import connect
from hitl.logs import get_logger
from hitl.settings import get_settings

QUEUES = ("detect", "dispatch", "ingest", "train")
DELIVERY_TTL_SECONDS = 7 * 24 * 3600

log = get_logger("hitl.celery")


def create_app() -> Celery:
    settings = get_settings()
    app = Celery("hitl", broker=settings.redis_url, include=[])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(name) for name in QUEUES],  # type: ignore[no-untyped-call]
        task_default_queue="detect",
        task_routes={
            "hitl.detect": {"queue": "detect"},
            "hitl.dispatch.*": {"queue": "dispatch"},
            "hitl.ingest.*": {"queue": "ingest"},
            "hitl.train.*": {"queue": "train"},
        },
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        enable_utc=True,
    )
    return app


app = create_app()


class PipelineTask(Task):  # type: ignore[misc]
    """Base task: delivery counting with a dead-letter list, runtime and queue-wait metrics."""

    abstract = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        settings = get_settings()
        redis = connect(settings.redis_url)
        task_id = self.request.id or "eager"
        queue = (self.request.delivery_info or {}).get("routing_key") or "unknown"
        counter = settings.key("deliveries", task_id)
        deliveries = int(redis.incr(counter))
        redis.expire(counter, DELIVERY_TTL_SECONDS)
        if deliveries > settings.max_deliveries:
            self._dead_letter(queue, args, kwargs, deliveries)
            redis.delete(counter)
            return None
        enqueued_at = kwargs.get("enqueued_at")
        if isinstance(enqueued_at, int | float):
            metrics.TASK_QUEUE_WAIT.labels(self.name).observe(max(0.0, time.time() - enqueued_at))
        started = time.perf_counter()
        outcome = "failure"
        try:
            result = super().__call__(*args, **kwargs)
            outcome = "success"
            return result
        except Retry:
            outcome = "retry"
            raise
        finally:
            # Reached on return, exception or retry: only a killed worker leaves the count raised.
            redis.delete(counter)
            metrics.TASK_SECONDS.labels(self.name, outcome).observe(time.perf_counter() - started)

    def _dead_letter(self, queue: str, args: Any, kwargs: Any, deliveries: int) -> None:
        settings = get_settings()
        entry = {
            "task": self.name,
            "task_id": self.request.id,
            "queue": queue,
            "args": args,
            "kwargs": kwargs,
            "deliveries": deliveries,
            "at": time.time(),
        }
        connect(settings.redis_url).lpush(settings.key("dlq", queue), json.dumps(entry, default=str))
        metrics.TASKS_DEAD_LETTERED.labels(queue).inc()
        log.error("task_dead_lettered", task=self.name, task_id=self.request.id, queue=queue, deliveries=deliveries)
