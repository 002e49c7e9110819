"""Reconciliation worker: ``python -m services.ingestor.reconciler`` (Celery queue ``ingest``)."""

from __future__ import annotations

from hitl.worker import run_worker


def _register() -> None:
    import services.ingestor.tasks  # noqa: F401  (registers hitl.ingest.reconcile)


if __name__ == "__main__":
    run_worker("reconciler", ["ingest"], _register, concurrency=1)
