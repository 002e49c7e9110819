from __future__ import annotations

from celery.beat import ScheduleEntry

from hitl.celery_app import app
from hitl.schedule import beat_schedule


def test_every_entry_is_a_valid_beat_entry_on_a_known_queue() -> None:
    for name, entry in beat_schedule().items():
        ScheduleEntry(name=name, app=app, **entry)
        assert entry["options"]["queue"] in {"detect", "dispatch", "ingest", "train"}
        assert entry["task"].startswith("hitl.")
