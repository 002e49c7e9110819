"""``hitl models``: the model registry — list versions, promote one, roll back."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from hitl.model.registry import ModelRegistry

models_app = typer.Typer(help="Model versions in the registry (S3).", no_args_is_help=True)


def version_rows(registry: ModelRegistry) -> list[dict[str, Any]]:
    """One summary per version, oldest first (also the demo report's ``versions``)."""
    serving = registry.serving_version()
    rows = []
    for version in registry.versions():
        meta = registry.describe(version)
        rows.append(
            {
                "version": meta.version,
                "f1": meta.f1,
                "promoted": any(h["status"] == "serving" for h in meta.history),
                "status": meta.status,
                "serving": meta.version == serving,
                "parent": meta.parent,
                "created_at": meta.created_at,
                "train_images": meta.info.get("train_images"),
                "train_seconds": meta.info.get("train_seconds"),
            }
        )
    return rows


@models_app.command("list")
def list_versions(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every version with its status, F1 on its test set, parent and training size."""
    from hitl.model.registry import ModelRegistry

    rows = version_rows(ModelRegistry())
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    if not rows:
        typer.echo(
            "no model versions yet: label images in the portal (cold start), or run `hitl dataset import`, "
            "then `hitl train --wait`"
        )
    for row in rows:
        f1 = "   -  " if row["f1"] is None else f"{row['f1']:.4f}"
        mark = "*" if row["serving"] else " "
        typer.echo(
            f"{mark} {row['version']}  {row['status']:9}  F1 {f1}  parent {row['parent'] or '-':6}  {row['created_at']}"
        )


@models_app.command("promote")
def promote(version: str, reason: str = "promoted by an operator") -> None:
    """Serve VERSION (an atomic pointer swap; detectors follow within their cache time). On
    Rekognition or SageMaker the version is started / deployed first."""
    from hitl.model.registry import RegistryError
    from hitl.settings import get_settings
    from hitl.training.backends import promote as promote_version

    try:
        serving = promote_version(get_settings(), version, reason=reason)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"serving {serving}")


@models_app.command("rollback")
def rollback(reason: str = "rolled back by an operator") -> None:
    """Serve the previously serving version again (on Rekognition, it is started first)."""
    from hitl.model.registry import RegistryError
    from hitl.settings import get_settings
    from hitl.training.backends import rollback as roll_back

    try:
        version = roll_back(get_settings(), reason=reason)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"serving {version}")
