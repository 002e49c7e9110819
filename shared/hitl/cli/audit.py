"""``hitl audit report``: the model measured against audit verdicts, per model version."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from hitl.settings import get_settings

audit_app = typer.Typer(help="Audit verdicts: how the model does against human reviewers.", no_args_is_help=True)


@audit_app.callback()
def _group() -> None:
    """Audit verdicts: how the model does against human reviewers."""


def _cell(estimate: dict[str, Any]) -> str:
    if estimate["value"] is None:
        return "n/a"
    return f"{estimate['value']:.3f} [{estimate['ci95_low']:.3f}, {estimate['ci95_high']:.3f}]"


@audit_app.command("report")
def report(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Precision, recall, F1 and agreement with Wilson 95 % intervals, per model version."""
    from hitl.loops.audit import AuditStore

    store = AuditStore(get_settings())
    data = store.report()
    for version in data:
        store.publish(version)
    if as_json:
        sys.stdout.write(json.dumps({"model_versions": data}, indent=2) + "\n")
        return
    if not data:
        typer.echo("no audit verdicts yet")
        return
    typer.echo(f"{'model version':24} {'loops':>6}  {'precision':24} {'recall':24} {'F1':24} agreement")
    for version, stats in data.items():
        typer.echo(
            f"{version:24} {stats['loops']:>6}  {_cell(stats['precision']):24} {_cell(stats['recall']):24} "  # type: ignore[arg-type]
            f"{_cell(stats['f1']):24} {_cell(stats['agreement'])}"  # type: ignore[arg-type]
        )


if __name__ == "__main__":
    audit_app()  # also runnable alone: python -m hitl.cli.audit report --json
