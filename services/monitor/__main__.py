"""Queue-depth exporter: ``python -m services.monitor``.

Reads, every few seconds, the length of each Celery queue and Redis dead-letter list and the
approximate depth of each SQS queue and its dead-letter queue, for dashboards, alerts and KEDA.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from hitl import aws, health, logs, metrics, startup
from hitl.adapters.redis_index import connect
from hitl.celery_app import QUEUES
from hitl.entry import parse_args
from hitl.settings import Settings, get_settings

INTERVAL_SECONDS = 5.0


def sample(settings: Settings) -> None:
    redis = connect(settings.redis_url)
    for queue in QUEUES:
        metrics.QUEUE_DEPTH.labels(queue, "redis").set(redis.llen(queue))
        metrics.DEAD_LETTER_DEPTH.labels(queue, "redis").set(redis.llen(settings.key("dlq", queue)))
    sqs = aws.client("sqs")
    for name in (settings.uploads_queue, settings.events_queue):
        for queue, gauge in ((name, metrics.QUEUE_DEPTH), (f"{name}{settings.dlq_suffix}", metrics.DEAD_LETTER_DEPTH)):
            url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            gauge.labels(name, "sqs").set(int(attrs["Attributes"]["ApproximateNumberOfMessages"]))


def main() -> None:
    parse_args()
    settings = get_settings()
    startup.require(settings, "monitor")
    logs.configure("monitor", settings.log_level)
    log = logs.get_logger("hitl.monitor")
    if settings.metrics_port > 0:
        metrics.serve(settings.metrics_port)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    health.mark_ready(True)
    while not stop.is_set():
        try:
            sample(settings)
            health.touch(health.heartbeat_path())
            metrics.WORKER_HEARTBEAT.labels("monitor").set_to_current_time()
        except Exception:
            log.exception("monitor_sample_failed")
        stop.wait(INTERVAL_SECONDS)
    health.mark_ready(False)


if __name__ == "__main__":
    main()
