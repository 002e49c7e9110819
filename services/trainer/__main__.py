"""Trainer worker: ``python -m services.trainer`` (queue ``train``, one run at a time)."""

from __future__ import annotations

from hitl.worker import run_worker


def _register() -> None:
    import services.trainer.tasks  # noqa: F401  (registers hitl.train.*)


if __name__ == "__main__":
    # One process: a training run uses both cores through the model's own threads.
    run_worker("trainer", ["train"], _register, concurrency=1)
