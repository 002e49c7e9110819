"""``hitl dlq``: dead letters listed and sent again (Redis lists of Celery tasks, SQS dead-letter queues)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from hitl.settings import get_settings

dlq_app = typer.Typer(
    help="Dead letters: `hitl dlq` lists them, `hitl dlq redrive` sends them again.", invoke_without_command=True
)


@dlq_app.callback()
def dlq(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Tasks in the Redis dead-letter lists and messages in the SQS dead-letter queues, per queue."""
    if ctx.invoked_subcommand is not None:
        return
    from hitl.dlq import Redriver

    redriver = Redriver(get_settings())
    waiting = redriver.redrive(dry_run=True)
    if as_json:
        payload = {
            "dead_letters": [m.__dict__ for m in waiting],
            "redriven_so_far": redriver.counts(),
        }
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        return
    if not waiting:
        typer.echo("no dead letters")
    for item in waiting:
        typer.echo(item.describe())
    counts = redriver.counts()
    if counts:
        typer.echo("redriven so far: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if waiting:
        typer.echo("`hitl dlq redrive [--queue Q] [--reason R] [--dry-run]` sends them again")


@dlq_app.command("redrive")
def redrive(
    queue: Annotated[
        str | None, typer.Option("--queue", help="one queue: detect, dispatch, …, hitl-uploads, …")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="only dead letters with this reason")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would move; move nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Send dead letters again to their queues; prints each one moved. Idempotent: the tasks are
    keyed by image, detection and loop, so a message sent twice has one effect."""
    from hitl.dlq import Redriver

    moved = Redriver(get_settings()).redrive(queue=queue, reason=reason, dry_run=dry_run)
    if as_json:
        sys.stdout.write(json.dumps([m.__dict__ for m in moved], indent=2, default=str) + "\n")
        return
    verb = "would move" if dry_run else "moved"
    for item in moved:
        typer.echo(f"{verb} {item.describe()}")
    typer.echo(f"{len(moved)} dead letter(s) {verb}")
