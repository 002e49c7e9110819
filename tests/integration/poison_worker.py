"""A real Celery worker with one task that kills its own process, for the dead-letter test."""

from __future__ import annotations

import os
from typing import Any

from hitl.celery_app import PipelineTask, app
from hitl.worker import run_worker


def register() -> None:
    @app.task(name="hitl.test.crash_or_record", base=PipelineTask, bind=True)
    def crash_or_record(self: Any, marker: str, crash: bool) -> None:
        if crash:
            os._exit(13)  # as an out-of-memory kill or a segfaulting decoder would
        from hitl.adapters.redis_index import connect
        from hitl.settings import get_settings

        settings = get_settings()
        connect(settings.redis_url).rpush(settings.key("test", "done"), marker)


if __name__ == "__main__":
    run_worker("poison", ["poison"], register, concurrency=1)
