"""``hitl review``: the simulated reviewer (``--auto``) through the portal's HTTP API, and the
review service's administration commands (sub-commands registered in ``hitl.cli.main``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from hitl.review import autoreview
from hitl.review.portal_client import PortalClient
from hitl.settings import get_settings

review_app = typer.Typer(
    name="review",
    add_completion=False,
    invoke_without_command=True,
    help="Review service: a simulated reviewer (--auto) and administration commands.",
)


def _password(reviewer: str, password_file: Path | None) -> str:
    if os.environ.get("HITL_REVIEW_PASSWORD"):
        return os.environ["HITL_REVIEW_PASSWORD"]
    path = password_file or Path(
        os.environ.get("HITL_REVIEW_PASSWORD_FILE", get_settings().run_dir / "review" / "reviewer-passwords.json")
    )
    text = path.read_text().strip()
    if text.startswith("{"):
        passwords = json.loads(text)
        if reviewer not in passwords:
            raise typer.BadParameter(f"no password for {reviewer!r} in {path}")
        return str(passwords[reviewer])
    return text


@review_app.callback()
def review(
    ctx: typer.Context,
    auto: Annotated[bool, typer.Option("--auto", help="Answer tasks automatically from --truth.")] = False,
    truth: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Ground Truth manifest (JSON Lines).")
    ] = None,
    error_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Fraction of answers to corrupt.")] = 0.0,
    reviewer: Annotated[str, typer.Option(help="Reviewer to sign in as.")] = "bob",
    password_file: Annotated[
        Path | None, typer.Option(help="Password file: plain text, or JSON {reviewer: password}.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="Review service URL (default $HITL_REVIEW_URL).")] = None,
    max_tasks: Annotated[int | None, typer.Option(min=1, help="Stop after this many answers.")] = None,
    until_idle: Annotated[float, typer.Option(min=0.0, help="Stop when the queue stays empty this long (s).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the error generator.")] = 0,
) -> None:
    """Review human loops as a simulated reviewer (demos and benchmarks), or administer the service."""
    if ctx.invoked_subcommand is not None:
        return
    if not auto or truth is None:
        raise typer.BadParameter(
            "pass --auto --truth FILE to review as a simulated reviewer, or a command (hitl review --help)"
        )
    base = url or os.environ.get("HITL_REVIEW_URL") or f"http://127.0.0.1:{get_settings().review_port}"
    client = PortalClient(base)
    client.sign_in(reviewer, _password(reviewer, password_file))
    report = autoreview.run(
        client,
        autoreview.load_truth(truth),
        error_rate=error_rate,
        seed=seed,
        max_tasks=max_tasks,
        until_idle=until_idle,
        log=typer.echo,
    )
    typer.echo(
        json.dumps(
            {
                "reviewer": reviewer,
                "answered": report.answered,
                "corrupted": report.corrupted,
                "skipped": report.skipped,
                "lost": report.lost,
            }
        )
    )
