"""``hitl containers``: the local stack with its services run from the images (``make up CONTAINERS=1``)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from hitl.settings import get_settings

containers_app = typer.Typer(
    help="The local stack with every pipeline service in a container (images from `make image`).",
    no_args_is_help=True,
)


@containers_app.command("up")
def containers_up(
    wait: bool = True,
    build: Annotated[bool, typer.Option(help="build the images first (reused when the sources are unchanged)")] = True,
) -> None:
    """Redis and moto as processes, the bootstrap as a one-shot container, the services as containers."""
    from hitl.stack import containers, engine

    eng = engine.detect()
    if build:
        built = engine.build(eng, reuse=True)
        typer.echo(json.dumps(engine.summary(built)), err=True)
    settings = get_settings()
    stack = containers.up(settings, settings.run_dir, engine=eng)
    if wait:
        names = [containers.REVIEW.name, *(s.name for s in containers.pipeline_services())]
        ready = containers.wait_ready(stack, names)
        typer.echo(json.dumps({"ready_seconds": {k: round(v, 1) for k, v in ready.items()}}), err=True)
    typer.echo(f"stack up ({eng.name}); run: source {stack.stack.env_file}", err=True)


@containers_app.command("down")
def containers_down() -> None:
    """Stop exactly the containers and processes `containers up` started (also a process stack's)."""
    from hitl.stack import containers

    stopped = containers.down(get_settings().run_dir)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}", err=True)


@containers_app.command("memory")
def containers_memory() -> None:
    """Resident memory (RSS and PSS, bytes) of every running service container of this stack."""
    from hitl.stack import containers, engine

    settings = get_settings()
    run_dir = settings.run_dir.resolve()
    names = sorted(p.stem for p in (run_dir / "containers").glob("*.cid"))
    eng = engine.detect()
    prefix = containers.container_prefix(run_dir)
    sys.stdout.write(json.dumps({n: containers.rss_bytes(eng, f"hitl-{prefix}-{n}") for n in names}, indent=2) + "\n")
