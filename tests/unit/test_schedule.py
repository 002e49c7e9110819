from __future__ import annotations

from celery.beat import ScheduleEntry

from hitl.celery_app import app
from hitl.schedule import beat_schedule


def test_every_entry_is_a_valid_beat_entry_on_a_known_queue() -> None:
    schedule = beat_schedule()
    assert set(schedule) == {
        "requeue-stale-detections", "reconcile-human-loops", "release-waiting-reviews", "training-poll"
    }
    assert {entry["task"] for entry in schedule.values()} == {
        "hitl.detect.requeue_stale",
        "hitl.dispatch.release_waiting",
        "hitl.ingest.reconcile",
        "hitl.train.poll",
    }
    for name, entry in schedule.items():
        ScheduleEntry(name=name, app=app, **entry)
        assert entry["options"]["queue"] in {"detect", "dispatch", "ingest", "train"}
        assert entry["task"].startswith("hitl.")

