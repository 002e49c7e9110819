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
    """Precision, recall, F1 and agreement with Wilson 95 % intervals, per model version; and per label
    the auto-accept threshold whose precision the audits show ≥ Target-Auto-Accept-Precision (95 %)."""
    from hitl.domain.auto_accept import AutoAccept
    from hitl.loops.audit import AuditStore
    from hitl.params import ParameterStore

    settings = get_settings()
    target = ParameterStore(settings).snapshot().target_auto_accept_precision
    store = AuditStore(settings)
    data = store.report(target)
    for version in data:
        store.publish(version)
    if as_json:
        sys.stdout.write(json.dumps({"model_versions": data, "target_auto_accept_precision": target}, indent=2) + "\n")
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
    typer.echo(f"\nauto-accept (precision ≥ {target:.2f} at 95 %, Clopper–Pearson, from the audited detections)")
    for version, stats in data.items():
        accept: dict[str, dict[str, Any]] = stats["auto_accept"]  # type: ignore[assignment]
        if not accept:
            typer.echo(f"{version:24} no audited detections yet: the configured threshold stays")
        for label, entry in accept.items():
            typer.echo(f"{version:24} {label:16} {AutoAccept(**entry).explain()}")


if __name__ == "__main__":
    audit_app()  # also runnable alone: python -m hitl.cli.audit report --json
