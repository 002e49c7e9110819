"""Celery beat's schedule: the periodic checks of every service, in one place."""

from __future__ import annotations

from typing import Any

from celery.schedules import schedule

from hitl.settings import get_settings


def beat_schedule() -> dict[str, dict[str, Any]]:
    reconcile_every = get_settings().reconcile_interval_seconds
    return {
        "requeue-stale-detections": {
            "task": "hitl.detect.requeue_stale",
            "schedule": schedule(run_every=300),
            "options": {"queue": "detect", "expires": 290},
        },
        "reconcile-human-loops": {
            "task": "hitl.ingest.reconcile",
            "schedule": schedule(run_every=reconcile_every),
            "options": {"queue": "ingest", "expires": max(1, reconcile_every - 10)},
        },
        # Images over the review budget are dispatched as slots free (a no-op while none wait).
        "release-waiting-reviews": {
            "task": "hitl.dispatch.release_waiting",
            "schedule": schedule(run_every=10),
            "options": {"queue": "dispatch", "expires": 9},
        },
        # Every minute; the task itself honours Automatic-Training-Poll-Frequency (changeable live).
        "training-poll": {
            "task": "hitl.train.poll",
            "schedule": schedule(run_every=60),
            "options": {"queue": "train", "expires": 55},
        },
    }
