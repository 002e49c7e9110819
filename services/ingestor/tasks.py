"""The ``ingest`` queue's periodic task: reconciliation of human loops (see hitl.schedule)."""

from __future__ import annotations

from typing import Any

from hitl.celery_app import PipelineTask, app
from hitl.loops.ingest import Ingestor
from hitl.loops.reconcile import Reconciler
from hitl.settings import get_settings

RECONCILE_TASK = "hitl.ingest.reconcile"


@app.task(name=RECONCILE_TASK, base=PipelineTask, bind=True, retry_transient=False)
def reconcile(self: Any, enqueued_at: float | None = None) -> dict[str, int]:
    settings = get_settings()
    return Reconciler(settings, Ingestor(settings)).run()
