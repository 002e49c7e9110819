"""The Celery application every worker and publisher shares: queues, reliability, task base.

Reliability choices (Redis broker, at-least-once):
- ``acks_late`` + ``reject_on_worker_lost``: a task whose worker dies is delivered again;
- prefetch 1: a slow image never holds others hostage in a worker's buffer;
- the visibility timeout is above the longest task and any retry countdown, so Redis does not
  hand live work to a second worker;
- :class:`PipelineTask` counts deliveries that ended without the task returning (the worker was
  killed): after ``max_deliveries`` the message goes to a Redis dead-letter list instead of
  killing workers forever;
- transient failures (connection errors, timeouts, 5xx, throttling) are retried by
  :class:`PipelineTask` with exponential backoff and jitter up to ``task_retry_budget``; whatever
  exhausts the budget, or fails for good, is dead-lettered with its reason before Celery sees the
  failure;
- ``task_acks_on_failure_or_timeout=True``, deliberately: by the time Celery sees a failure the
  task's fate is already recorded (a retry message was published, or the dead-letter entry
  written), so acking removes only a message that is accounted for. Rejecting instead would not
  help on Redis (a reject without requeue deletes the message, silently) and requeueing would
  replay poison forever. The soft time limit is below the hard one so a slow task is dead-lettered
  (reason ``time_limit``) by the wrapper rather than killed mid-write;
- the broker transport is kombu's Redis transport with one fix (:class:`RedisTransport`): a worker
  survives the loss of its Redis connection (a Redis restart) instead of exiting;
- task messages are compact: without the fields a worker would assume anyway (:class:`CompactAMQP`)
  and with a text body rather than base64. A backlog is held in Redis's memory, one message per task:
  a queued ``detect`` task costs ≈ 0.73 KB instead of 1.34 KB (``bench/queue_footprint.py``).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlparse

import redis.exceptions
from celery import Celery, Task
from celery.app.amqp import AMQP
from celery.exceptions import Retry, SoftTimeLimitExceeded
from kombu.entity import Queue
from kombu.transport import redis as kombu_redis

from hitl import metrics
from hitl.adapters.redis_index import connect
from hitl.logs import get_logger
from hitl.settings import Settings, get_settings
from hitl.transient import backoff, is_transient, reason_of

QUEUES = ("detect", "dispatch", "ingest", "train")
DELIVERY_TTL_SECONDS = 7 * 24 * 3600
TASK_OUTCOMES = ("success", "failure", "retry")  # the ``outcome`` label of hitl_task_duration_seconds

log = get_logger("hitl.celery")


class RedisChannel(kombu_redis.Channel):  # type: ignore[misc]
    """kombu's Redis channel, failing with a connection error once its connection is collected.

    On a lost connection (Redis restarted) Celery's consumer calls ``Connection.collect()``, which
    closes the channels and then detaches the transport from its connection, then ``close()``. When
    a channel's first close fails on the dead socket (a BRPOP still pending on it, or an earlier
    channel's close failing), kombu 5.7.0 leaves it open with its unacknowledged deliveries; the
    second close then restores them through ``restore_unacked_once``, which needs a new connection
    pool, whose parameters are read from the detached transport: ``AttributeError: 'NoneType' object
    has no attribute 'hostname'``. Celery ignores only connection errors there, so the worker exited.
    Raised as a connection error, it is ignored like the first close's; the deliveries stay in
    Redis's unacked set and are delivered again after the visibility timeout (at least once), and an
    ack of a task still running on the old channel is logged as failed the same way.
    """

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection of this channel was closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        return params


class RedisTransport(kombu_redis.Transport):  # type: ignore[misc]
    Channel = RedisChannel


def broker_transport(url: str) -> str | None:
    """The transport for ``url``: :class:`RedisTransport` for Redis, else kombu's choice."""
    return f"{__name__}:RedisTransport" if urlparse(url).scheme in ("redis", "rediss") else None


# Task-message headers whose value here is what Celery 5's worker assumes when the header is absent:
# ``celery.worker.request.Request`` reads each with ``.get()`` (``retries``, ``replaced_task_nesting``
# and the reprs with these defaults, ``timelimit`` only when truthy, ``shadow`` only when present and
# truthy) and ``celery.app.task.Context`` has the same class defaults, which retries copy forward. No
# Python worker reads ``lang``. Each is dropped only at exactly this value: an ETA, a retry count, a
# time limit, a parent or a group is always sent. ``task``, ``id``, ``root_id`` and ``origin`` stay.
ABSENT_EQUIVALENT_HEADERS: dict[str, Any] = {
    "lang": "py",
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "parent_id": None,
    "ignore_result": None,  # None: the task's own setting (task_ignore_result)
    "retries": 0,
    "timelimit": [None, None],  # the worker then applies task_time_limit / task_soft_time_limit
    "argsrepr": "",
    "kwargsrepr": "",
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}


def _is_absent_equivalent(name: str, value: Any) -> bool:
    if name not in ABSENT_EQUIVALENT_HEADERS:
        return False
    default = ABSENT_EQUIVALENT_HEADERS[name]
    if isinstance(default, list):  # a tuple or a list, either way the same once serialized
        return isinstance(value, list | tuple) and list(value) == default
    return type(value) is type(default) and bool(value == default)


class CompactAMQP(AMQP):  # type: ignore[misc]
    """Task messages without the fields a Celery 5 worker would assume anyway.

    Every queued message is a string in Redis's memory, ≈ 1.3 KB as Celery writes it for ``detect``
    and mostly defaults, so a backlog's cost is mostly them. Leaving them out changes nothing a worker
    does: the same task, id, arguments, retries, time limits, ETA, root and parent ids. Removed:

    - the headers in :data:`ABSENT_EQUIVALENT_HEADERS`, at exactly those values;
    - ``argsrepr`` / ``kwargsrepr``: reprs of the arguments for task events and monitors, both off
      here (``worker_send_task_events``, ``task_send_sent_event``); a failure's log line shows
      ``repr(args)`` / ``repr(kwargs)`` when there is none, and the pipeline's own logs bind the image
      id from the arguments. Not computing them also saves a ``saferepr`` per message;
    - the body's empty canvas (``callbacks``, ``errbacks``, ``chain``, ``chord`` at None), read with
      ``.get()`` or merged over the same None defaults;
    - without a result backend (``task_ignore_result``, none configured), the properties
      ``reply_to`` and ``correlation_id``: where an ``rpc://`` backend would send a result and under
      which id. With a backend configured they are kept.

    The broker's own fields (delivery tag, exchange and routing key, which requeueing and redelivery
    use) are added later by kombu's channel and are untouched; so are any custom headers.
    """

    def as_task_v2(self, *args: Any, **kwargs: Any) -> Any:
        # Empty reprs: none computed, and the headers then dropped below (see the class docstring).
        kwargs.setdefault("argsrepr", "")
        kwargs.setdefault("kwargsrepr", "")
        message = super().as_task_v2(*args, **kwargs)
        headers: dict[str, Any] = message.headers
        for name in [n for n, value in headers.items() if _is_absent_equivalent(n, value)]:
            del headers[name]
        _, _, embed = message.body
        for name in [n for n, value in embed.items() if value is None]:
            del embed[name]
        if not self.app.conf.result_backend:
            message.properties.pop("reply_to", None)
            message.properties.pop("correlation_id", None)
        return message


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("hitl", broker=settings.redis_url, include=[], amqp=f"{__name__}:CompactAMQP")
    app.conf.update(
        broker_transport=broker_transport(settings.redis_url),
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,  # see the module docstring: failures are recorded first
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit,
        task_time_limit=settings.task_time_limit,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # The JSON body stored as text, not base64 (a third larger). kombu's own option: each
            # message names its encoding and is decoded by it, so messages of either form are read.
            "body_encoding": "utf-8",
        },
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
    # Periodic tasks (beat sends them again) are neither retried nor dead-lettered on failure.
    retry_transient = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        settings = get_settings()
        redis = connect(settings.redis_url)
        task_id = self.request.id or "eager"
        queue = (self.request.delivery_info or {}).get("routing_key") or _queue_of(self.name)
        counter = settings.key("deliveries", task_id)
        pipe = redis.pipeline(transaction=False)  # one round trip per task instead of two
        pipe.incr(counter)
        pipe.expire(counter, DELIVERY_TTL_SECONDS)
        self.preflight(pipe, kwargs)
        replies = pipe.execute()
        deliveries = int(replies[0])
        self.request.preflight = replies[2:]
        if deliveries > settings.max_deliveries:
            self._dead_letter(queue, args, kwargs, deliveries, reason="worker_lost")
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
        except SoftTimeLimitExceeded:
            if self.retry_transient:
                self._dead_letter(queue, args, kwargs, deliveries, reason="time_limit")
            raise
        except Exception as exc:
            if not self.retry_transient or self.request.called_directly:
                raise
            retries = int(self.request.retries or 0)
            if is_transient(exc) and retries < settings.task_retry_budget:
                outcome = "retry"
                countdown = backoff(retries, settings.task_retry_backoff_initial, settings.task_retry_backoff_max)
                metrics.TASK_RETRIES.labels(self.name, reason_of(exc)).inc()
                log.warning(
                    "task_retry_transient", task=self.name, task_id=self.request.id, retries=retries,
                    countdown=round(countdown, 2), reason=reason_of(exc), error=str(exc)[:300],
                    **_ids(kwargs),
                )
                self.on_transient(kwargs, exc)
                raise self.retry(exc=exc, countdown=countdown, max_retries=settings.task_retry_budget) from exc
            reason = reason_of(exc)
            if is_transient(exc):
                reason = f"{reason} after {retries} retries"
            self._dead_letter(queue, args, kwargs, deliveries, reason=reason)
            raise
        finally:
            # Reached on return, exception or retry: only a killed worker leaves the count raised.
            redis.delete(counter)
            metrics.TASK_SECONDS.labels(self.name, outcome).observe(time.perf_counter() - started)

    def preflight(self, pipe: Any, kwargs: dict[str, Any]) -> None:
        """Reads the task needs first, queued on ``pipe`` behind the delivery count so that they share
        its round trip; their replies are in ``self.request.preflight``, in order."""

    def on_transient(self, kwargs: dict[str, Any], exc: BaseException) -> None:
        """Called before a transient failure is retried (e.g. to show ``dispatch_pending``)."""

    def on_dead_letter(self, kwargs: dict[str, Any], reason: str) -> None:
        """Called after the message is in the dead-letter list: record the state where people look."""
        from hitl.adapters.redis_index import ImageIndex

        image_id = kwargs.get("image_id")
        if not isinstance(image_id, str):
            return
        queue = _queue_of(self.name)
        if self.name == "hitl.detect":
            ImageIndex(get_settings()).update(image_id, state="dead_lettered", reason=reason)
        elif queue == "dispatch":
            from hitl.loops.status import LoopStatusWriter

            detection_id = str(kwargs.get("detection_id") or "")
            attempt = int(kwargs.get("attempt") or 0)
            LoopStatusWriter(get_settings()).dead_lettered(image_id, detection_id, attempt, reason)

    def _dead_letter(
        self, queue: str, args: Any, kwargs: Any, deliveries: int, reason: str = "unspecified"
    ) -> None:
        settings = get_settings()
        entry = {
            "task": self.name,
            "task_id": self.request.id,
            "queue": queue,
            "args": args,
            "kwargs": kwargs,
            "deliveries": deliveries,
            "reason": reason,
            "at": time.time(),
        }
        connect(settings.redis_url).lpush(settings.key("dlq", queue), json.dumps(entry, default=str))
        metrics.TASKS_DEAD_LETTERED.labels(queue).inc()
        log.error(
            "task_dead_lettered", task=self.name, task_id=self.request.id, queue=queue, deliveries=deliveries,
            reason=reason, **_ids(kwargs),
        )
        try:
            self.on_dead_letter(dict(kwargs or {}), reason)
        except Exception:  # the dead-letter entry is written; the index is a view of it
            log.warning("dead_letter_state_not_recorded", task=self.name, exc_info=True)


def init_task_metrics(celery: Celery) -> list[str]:
    """Create the duration series of every pipeline task the worker runs, for every outcome, at zero.

    Prometheus's ``rate()`` and ``increase()`` count only the increase between two samples: a series
    created by its first observation (a first failure, at 1) shows no increase, so the "Task failure
    ratio" panel and ``HitlTaskFailureRateHigh`` would miss a task's failures until it failed again
    within the window. Existing at 0 from the start, the first failure is an increase like any other.
    """
    names = sorted(name for name, task in celery.tasks.items() if isinstance(task, PipelineTask))
    for name in names:
        for outcome in TASK_OUTCOMES:
            metrics.TASK_SECONDS.labels(name, outcome)
    return names


def _queue_of(task_name: str) -> str:
    """The queue a task is routed to by name (``hitl.dispatch.start_loop`` → ``dispatch``)."""
    parts = task_name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in QUEUES else "unknown"


def _ids(kwargs: Any) -> dict[str, Any]:
    if not isinstance(kwargs, dict):
        return {}
    return {k: kwargs[k] for k in ("image_id", "detection_id") if k in kwargs}
