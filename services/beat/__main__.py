"""Celery beat, exactly one per deployment: ``python -m services.beat``."""

from __future__ import annotations

from hitl import health, logs
from hitl.celery_app import app
from hitl.entry import parse_args
from hitl.schedule import beat_schedule
from hitl.settings import get_settings


def main() -> None:
    parse_args()
    settings = get_settings()
    logs.configure("beat", settings.log_level)
    app.conf.beat_schedule = beat_schedule()
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    stop = health.start_heartbeat()
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
