"""Run an SQS-consuming service: metrics, heartbeat, readiness, JSON logs, graceful stop.

SIGTERM sets the consumer's stop flag: the batch in hand finishes (and is deleted) before exit;
messages not yet handled simply become visible again for another replica.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

from hitl import health, logs, metrics, startup
from hitl.adapters.sqs import SqsConsumer
from hitl.settings import get_settings


def run_consumer(service: str, build: Callable[[], SqsConsumer]) -> None:
    from hitl.entry import parse_args

    parse_args()
    settings = get_settings()
    startup.require(settings, service)
    logs.configure(service, settings.log_level)
    log = logs.get_logger(f"hitl.{service}")
    if settings.metrics_port > 0:
        metrics.serve(settings.metrics_port)
    stop_heartbeat = health.start_heartbeat(
        on_beat=lambda: metrics.WORKER_HEARTBEAT.labels(service).set_to_current_time()
    )
    consumer = build()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("service_stopping", signal=signum)
        health.mark_ready(False)
        consumer.stop()  # abandons a long poll in progress: the process stops now, not a poll later

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    health.mark_ready(True)
    log.info("service_started", queue_url=consumer.url)
    try:
        consumer.run()
    finally:
        stop_heartbeat.set()
        health.mark_ready(False)
        log.info("service_stopped")
