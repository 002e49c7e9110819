"""``hitl``: submit images, follow them, tune runtime parameters, run the local stack."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from hitl.cli.accounts import accounts_app
from hitl.cli.audit import audit_app
from hitl.cli.aws import aws_app
from hitl.cli.containers import containers_app
from hitl.cli.dataset import dataset_app
from hitl.cli.dlq import dlq_app
from hitl.cli.models import models_app
from hitl.cli.repair import repair as repair_command
from hitl.cli.review import review_app
from hitl.cli.review_flows import flows_app
from hitl.cli.train import train
from hitl.settings import get_settings

EXIT_CODES = (
    "Exit codes: 0 done; 1 done, but some input was refused (a rejected image, an import line) or a run "
    "failed; 2 bad usage or nothing to act on (unknown id, empty import, the stack still running for "
    "`stack reset`); 3 `train --wait`: the version was not promoted (rejected, skipped, busy); "
    "4 `train --wait`: no outcome in time."
)
app = typer.Typer(
    help="hitl-pipeline: human-in-the-loop custom labels.", no_args_is_help=True, epilog=EXIT_CODES
)
params_app = typer.Typer(help="Runtime parameters (SSM Parameter Store).", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack on loopback (embedded defaults).", no_args_is_help=True)
app.add_typer(params_app, name="params")
app.add_typer(review_app)
review_app.add_typer(accounts_app)  # hitl review users|keys
app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")
app.add_typer(stack_app, name="stack")
app.command("repair")(repair_command)
app.add_typer(dlq_app, name="dlq")
app.add_typer(dataset_app, name="dataset")
app.command("train")(train)
review_app.add_typer(flows_app, name="flows")
app.add_typer(aws_app, name="aws")
app.add_typer(containers_app, name="containers")


@app.callback()
def _cli_logs() -> None:
    """Library logs go to stderr as JSON, warnings and above: stdout stays the command's own output."""
    from hitl import logs

    logs.configure("cli", "WARNING")


console = Console(stderr=True)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _expand(targets: list[str]) -> list[str]:
    """Files, directories (their image files, recursively) and s3:// prefixes, in order."""
    found: list[str] = []
    for target in targets:
        path = Path(target)
        if target.startswith("s3://"):
            found.append(target)
        elif path.is_dir():
            found.extend(str(p) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(target)
    return found


@app.command()
def submit(
    targets: Annotated[list[str], typer.Argument(help="FILE, DIR or s3://bucket/prefix (several allowed)")],
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON result per image")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=32, help="concurrent uploads")] = 4,
) -> None:
    """Submit images for detection. The same image submitted twice is recorded once."""
    from hitl.submit import Client, Submission

    client = Client()
    items: list[str] = []
    for entry in _expand(targets):
        if entry.startswith("s3://"):
            bucket = entry[5:].partition("/")[0]
            if bucket != client.settings.bucket:
                items.append(entry)  # rejected below, with its reason recorded
            elif "/" in entry[5:] and not entry.endswith("/") and Path(entry).suffix.lower() in IMAGE_SUFFIXES:
                items.append(entry)
            else:
                items.extend(client.list_s3(entry))
        else:
            items.append(entry)

    results: list[Submission] = []
    progress = Progress(
        TextColumn("[bold]submitting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=len(items) < 5 or (not console.is_terminal and as_json),
    )
    def submit_one(item: str) -> Submission:
        if item.startswith("s3://"):
            return client.submit_s3_object(item, source="cli")
        return client.submit_file(Path(item), source="cli")

    with progress:
        task = progress.add_task("submit", total=len(items))
        for result in client.submit_many(items, submit_one, jobs=jobs):
            results.append(result)
            progress.advance(task)

    if as_json:
        _emit_json([r.as_dict() for r in results])
    else:
        for r in results:
            if r.outcome == "rejected":
                typer.echo(f"rejected  {r.name}: {r.reason} ({r.detail})")
            else:
                typer.echo(f"{r.outcome:9} {r.image_id}  {r.name}")
        counts = {o: sum(r.outcome == o for r in results) for o in ("queued", "duplicate", "rejected")}
        typer.echo(", ".join(f"{n} {o}" for o, n in counts.items()))
    if any(r.outcome == "rejected" for r in results):
        raise typer.Exit(1)


@app.command()
def annotate(
    prefix: Annotated[str, typer.Argument(help="s3://bucket/prefix of unlabelled images")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=32)] = 4,
) -> None:
    """Model-assisted annotation: the serving model labels every image under PREFIX and each becomes
    a review task prefilled with its prediction (boxes to adjust, or nothing found: plain labelling);
    the answers join the labelled dataset for the next version."""
    from hitl.submit import Client

    client = Client()
    if not prefix.startswith(f"s3://{client.settings.bucket}/"):
        console.print(f"[red]{prefix} is not under the configured bucket s3://{client.settings.bucket}/[/]")
        raise typer.Exit(2)
    items = list(client.list_s3(prefix))
    results = list(
        client.submit_many(items, lambda uri: client.submit_s3_object(uri, source="annotate", annotate=True), jobs)
    )
    if as_json:
        _emit_json([r.as_dict() for r in results])
    else:
        for r in results:
            typer.echo(f"{r.outcome:9} {r.image_id or '-':64}  {r.name}  {r.reason or ''}")
        typer.echo(f"{sum(r.outcome == 'queued' for r in results)} of {len(results)} images sent for annotation")
    if any(r.outcome == "rejected" for r in results):
        raise typer.Exit(1)


@app.command()
def status(
    image_id: Annotated[str | None, typer.Argument(help="image id (or a unique prefix of it)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What became of one image (detection, route, human loop, and why it waits); without an id, the
    pipeline: serving version or cold start, labels, queues, dead letters, what to do next."""
    from hitl.adapters.records import RecordStore
    from hitl.adapters.redis_index import ImageIndex
    from hitl.cli.overview import overview, pipeline_state
    from hitl.domain.waiting import cold_start_line, explain

    settings = get_settings()
    if image_id is None:
        summary = overview(settings)
        if as_json:
            _emit_json(summary)
            return
        typer.echo(f"serving version  {summary['serving_version'] or 'none'}")
        if summary.get("cold_start_note"):
            typer.echo(summary["cold_start_note"])
        typer.echo(f"images           {summary['images']}")
        typer.echo(f"labels           {summary['labels']}")
        typer.echo(f"queued           {json.dumps(summary['queued'])}")
        typer.echo(f"dead letters     {json.dumps(summary['dead_letters']) if summary['dead_letters'] else 'none'}")
        typer.echo(f"next             {summary['next']}")
        return
    index = ImageIndex(settings)
    matches = index.find(image_id)
    if len(matches) != 1:
        console.print(f"[red]{'no image' if not matches else 'ambiguous id'}[/] {image_id}")
        raise typer.Exit(2)
    full_id = matches[0]
    entry = index.get(full_id)
    if not entry:
        console.print(f"[red]no image[/] {image_id}")
        raise typer.Exit(2)
    record = RecordStore(settings).get(full_id) if entry.get("state") == "detected" else None
    state = pipeline_state(settings)
    result: dict[str, Any] = {"image_id": full_id, **entry, "why": explain(entry, state)}
    if record:
        result["record"] = record.model_dump(mode="json")
    if as_json:
        _emit_json(result)
        return
    typer.echo(f"image_id        {full_id}")
    for key, value in sorted(entry.items()):
        typer.echo(f"{key:15} {value}")
    typer.echo(f"{'why':15} {result['why']}")
    note = cold_start_line(state)
    if note:
        typer.echo(note)
    if record:
        for label in record.labels[:10]:
            box = label.box_px
            where = f" at ({box.left:.0f},{box.top:.0f},{box.width:.0f}x{box.height:.0f})" if box else ""
            typer.echo(f"{'label':15} {label.label} {label.confidence:.1f}{where}")


@params_app.command("get")
def params_get(name: Annotated[str | None, typer.Argument()] = None) -> None:
    """One parameter's value, or all of them."""
    from hitl.params import SPECS, ParameterStore

    store = ParameterStore()
    names = [name] if name else sorted(SPECS)
    for n in names:
        try:
            value = store.get_raw(n)
        except ValueError as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from exc
        typer.echo(value if name else f"{n}={value}")


@params_app.command("set")
def params_set(name: str, value: str) -> None:
    """Change a parameter; running services pick it up within their cache time."""
    from hitl.params import ParameterStore

    try:
        ParameterStore().set(name, value)
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    console.print(f"{name}={value}")


@app.command()
def rejections(limit: int = 20, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Recent rejected submissions and the counts by reason."""
    from hitl.adapters.redis_index import ImageIndex

    index = ImageIndex(get_settings())
    counts, recent = index.rejection_counts(), index.rejections(limit)
    if as_json:
        _emit_json({"counts": counts, "recent": recent})
        return
    for reason, count in sorted(counts.items()):
        typer.echo(f"{reason}: {count}")
    for item in recent:
        typer.echo(f"  {item['reason']:18} {item['uri']}  {item['detail']}")


@stack_app.command("up")
def stack_up(wait: bool = True) -> None:
    """Start the local stack in the background and write .run/stack.env."""
    from hitl.stack.local import pipeline_services, up, wait_ready

    settings = get_settings()
    stack = up(settings, settings.run_dir)
    for note in stack.notes:
        console.print(note)
    if wait:
        wait_ready(stack, [s.name for s in pipeline_services()])
    console.print(f"stack up; run: source {stack.env_file}")


@stack_app.command("status")
def stack_status(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Each process of the local stack: running or not, and how often the supervisor restarted it."""
    from hitl.stack import procs, supervisor

    run_dir = get_settings().run_dir.resolve()
    group = procs.ProcessGroup(run_dir)
    state = supervisor.read_state(run_dir)
    rows = []
    for name in group.names():
        pid = group.pid(name)
        seen = state["services"].get(name, {})
        rows.append(
            {
                "service": name,
                "pid": pid,
                "running": pid is not None and procs.alive(pid),
                "restarts": int(seen.get("restarts", 0)),
                "last_restart_at": seen.get("last_restart_at"),
                "restart_pending_at": seen.get("restart_at"),
            }
        )
    if as_json:
        _emit_json({"supervisor_running": state["running"], "services": rows})
        return
    if not rows:
        typer.echo(f"no local stack in {run_dir}")
        return
    typer.echo(f"supervisor: {'running' if state['running'] else 'not running'}")
    for row in rows:
        running = "running" if row["running"] else "exited" if row["restart_pending_at"] else "stopped"
        last = row["last_restart_at"]
        since = f", last at {time.strftime('%H:%M:%S', time.localtime(last))}" if last else ""
        typer.echo(f"{row['service']:12} {running:8} pid {row['pid'] or '-':>7}  restarts {row['restarts']}{since}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop exactly what `stack up` started, saving moto's objects and parameters first."""
    from hitl.stack.local import down

    stopped = down(get_settings().run_dir)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("reset")
def stack_reset(
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Forget everything the local stack holds (Redis and the object store together). Stop it first."""
    from hitl.stack.local import reset

    settings = get_settings()
    if not yes:
        typer.confirm(
            f"Delete every image, record, loop, label, model and parameter of the stack in {settings.run_dir}?",
            abort=True,
        )
    try:
        cleared = reset(settings.run_dir, settings)
    except RuntimeError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    console.print(f"cleared: {'; '.join(cleared) if cleared else 'nothing was stored'}")


@stack_app.command("bootstrap")
def stack_bootstrap() -> None:
    """Create the bucket, queues, rule and parameters (idempotent; also on AWS)."""
    from hitl.stack.bootstrap import bootstrap

    _emit_json(bootstrap(get_settings()).__dict__)


def main() -> None:
    app()
