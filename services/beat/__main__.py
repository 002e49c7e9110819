"""Celery beat, exactly one per deployment: ``python -m services.beat``.

It serves /metrics like every scraped service (``HITL_METRICS_PORT``): its heartbeat gauge shows a
stalled scheduler, and the scrape target's ``up`` shows a stopped one."""

from __future__ import annotations

import time

from hitl import health, logs, metrics, startup
from hitl.celery_app import app
from hitl.entry import parse_args
from hitl.schedule import beat_schedule
from hitl.settings import get_settings


def main() -> None:
    parse_args()
    settings = get_settings()
    startup.require(settings, "beat")
    logs.configure("beat", settings.log_level)
    app.conf.beat_schedule = beat_schedule()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    if settings.metrics_port > 0:
        metrics.serve(settings.metrics_port)
    stop = health.start_heartbeat(on_beat=lambda: metrics.WORKER_HEARTBEAT.labels("beat").set(time.time()))
    health.mark_ready(True)
    try:
        app.start(
            ["beat", "--schedule", str(settings.run_dir / "celerybeat-schedule"), "--loglevel", settings.log_level]
        )
    finally:
        stop.set()
        health.mark_ready(False)


if __name__ == "__main__":
    main()
