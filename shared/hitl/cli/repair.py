"""``hitl repair``: rebuild Redis's index from S3 and the A2I API (see :mod:`hitl.repair`)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from hitl.settings import get_settings


def repair(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Rebuild what Redis lost from S3 and the review service; idempotent, safe while workers run."""
    from hitl.logs import configure
    from hitl.repair import Repair

    configure("repair")  # JSON log lines on stderr; stdout carries the report
    changes = Repair(get_settings()).run()
    if as_json:
        sys.stdout.write(json.dumps(changes, indent=2) + "\n")
        return
    if not changes:
        typer.echo("nothing to repair")
    for what, count in sorted(changes.items()):
        typer.echo(f"{what}: {count}")
