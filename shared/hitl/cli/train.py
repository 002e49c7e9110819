"""``hitl train``: ask for a training run now, through the trainer worker (same lock, same F1 gate)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Annotated

import typer

from hitl.settings import get_settings

OUTCOME_EXIT = {"promoted": 0, "rejected": 3, "skipped": 3, "busy": 3, "failed": 1}


def train(
    wait: Annotated[bool, typer.Option("--wait", help="wait for the run's outcome and print it")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait with --wait")] = 3600,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train now on every labelled example (whatever Minimum-Untrained-Images says); the new version
    is promoted only past the F1 gate. Exit code with --wait: 0 promoted, 3 rejected/skipped/busy,
    1 failed, 4 no outcome within --timeout."""
    from hitl.adapters.redis_index import connect
    from hitl.celery_app import app
    from hitl.training.trigger import CHECK_TASK

    settings = get_settings()
    task_id = f"train-{uuid.uuid4().hex[:12]}"
    app.send_task(
        CHECK_TASK,
        kwargs={"force": True, "reason": "cli", "enqueued_at": time.time()},
        queue="train",
        task_id=task_id,
    )
    if not wait:
        typer.echo(f"training requested ({task_id}); `hitl models list` shows the outcome")
        return
    redis = connect(settings.redis_url)
    deadline = time.monotonic() + timeout
    key = settings.key("training", "outcome", task_id)
    while (raw := redis.get(key)) is None:
        if time.monotonic() > deadline:
            typer.echo(f"no outcome after {timeout:.0f}s; is the trainer running? (`hitl status`)", err=True)
            raise typer.Exit(4)
        time.sleep(1)
    outcome = json.loads(str(raw))
    if as_json:
        sys.stdout.write(json.dumps(outcome, indent=2) + "\n")
    else:
        f1 = f" F1 {outcome['f1']:.3f}" if outcome.get("f1") is not None else ""
        typer.echo(f"{outcome['outcome']}: {outcome.get('version') or ''}{f1} ({outcome['reason']})")
    raise typer.Exit(OUTCOME_EXIT.get(outcome["outcome"], 1))
