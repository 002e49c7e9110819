"""``hitl aws``: set up A2I on AWS, and check a service's settings before it is deployed."""

from __future__ import annotations

from typing import Annotated

import typer

aws_app = typer.Typer(help="Amazon A2I set-up and configuration checks for running on AWS.", no_args_is_help=True)


@aws_app.command("setup")
def setup(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the calls; read and write nothing")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="recreate flow definitions that differ")] = False,
) -> None:
    """Create or update the human task UIs, flow definitions and the A2I events rule (idempotent)."""
    from hitl.a2i.setup import A2ISetup, SetupError
    from hitl.settings import get_settings

    try:
        report = A2ISetup(get_settings(), dry_run=dry_run, echo=typer.echo).run(replace=replace)
    except SetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    for kind, arn in report.flows.items():
        typer.echo(f"flow {kind}: {arn}")
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)


@aws_app.command("check-settings")
def check_settings(
    service: Annotated[list[str] | None, typer.Option("--service", help="a service; repeatable; default all")] = None,
) -> None:
    """Report every setting a service's configuration needs and does not have (exit 1 if any)."""
    from hitl.settings import Settings
    from hitl.startup import SERVICES, missing

    settings = Settings()
    problems = [f"{name}: {line}" for name in (service or list(SERVICES)) for line in missing(settings, name)]
    for line in problems:
        typer.echo(line)
    if problems:
        raise typer.Exit(1)
    typer.echo("nothing missing")
