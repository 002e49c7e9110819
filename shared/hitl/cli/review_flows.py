"""``hitl review flows create|list|describe|update``: flow definitions stored by the review service.

Exit codes: 0 done; 1 the review service refused (the reason is printed) or could not be reached;
2 bad usage.
"""

from __future__ import annotations

import json
import sys
import urllib.error
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hitl.review.flow_admin import FlowAdminClient, FlowAdminError

flows_app = typer.Typer(
    help="Flow definitions (what reviewers are asked): create, list, describe, update.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

KINDS = {
    "boxes": "BoundingBox",
    "bounding-box": "BoundingBox",
    "boundingbox": "BoundingBox",
    "classification": "ImageClassification",
    "image-classification": "ImageClassification",
    "imageclassification": "ImageClassification",
    "verification": "LabelVerification",
    "label-verification": "LabelVerification",
    "labelverification": "LabelVerification",
}
KIND_HELP = "task kind: boxes | classification | verification (or the TaskType names)"

UrlOption = Annotated[str | None, typer.Option("--url", help="Review service URL (default $HITL_REVIEW_URL).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the service's JSON answer.")]
LabelsOption = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="A label (repeat, or comma-separated).")
]
TeamsOption = Annotated[list[str] | None, typer.Option("--team", help="A work team allowed (repeat); none: everyone.")]


def _kind(value: str) -> str:
    found = KINDS.get(value.strip().lower())
    if found is None:
        raise typer.BadParameter(f"unknown task kind {value!r}; use boxes, classification or verification")
    return found


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _client(url: str | None) -> FlowAdminClient:
    return FlowAdminClient.from_settings(base_url=url)


def _run(call: Any) -> Any:
    try:
        return call()
    except FlowAdminError as error:
        console.print(f"[red]{error.code}[/]: {error.message}")
        raise typer.Exit(1) from None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        console.print(f"[red]cannot reach the review service[/]: {error} (is the stack up? see HITL_REVIEW_URL)")
        raise typer.Exit(1) from None


def _fields(
    *,
    kind: str | None,
    labels: list[str] | None,
    task_count: int | None,
    task_time_limit: int | None,
    lifetime: int | None,
    title: str | None,
    description: str | None,
    instructions: str | None,
    instructions_file: Path | None,
    teams: list[str] | None,
    output: str | None,
    max_open_loops: int | None,
) -> dict[str, Any]:
    if instructions is not None and instructions_file is not None:
        raise typer.BadParameter("give --instructions or --instructions-file, not both")
    if instructions_file is not None:
        instructions = instructions_file.read_text()
    found: dict[str, Any] = {
        "TaskType": _kind(kind) if kind else None,
        "Labels": _split(labels) or None,
        "TaskCount": task_count,
        "TaskTimeLimitInSeconds": task_time_limit,
        "TaskAvailabilityLifetimeInSeconds": lifetime,
        "TaskTitle": title,
        "TaskDescription": description,
        "Instructions": instructions,
        "Teams": _split(teams) or None,
        "S3OutputPath": output,
        "MaxOpenLoops": max_open_loops,
    }
    return {key: value for key, value in found.items() if value is not None}


def _emit(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _show(flow: dict[str, Any]) -> None:
    config = flow.get("HumanLoopConfig", {})
    rows = [
        ("name", flow["FlowDefinitionName"]),
        ("arn", flow["FlowDefinitionArn"]),
        ("task kind", flow["TaskType"]),
        ("labels", ", ".join(flow["Labels"])),
        ("task count", config.get("TaskCount")),
        ("time limit", f"{config.get('TaskTimeLimitInSeconds')} s per task"),
        ("lifetime", f"{config.get('TaskAvailabilityLifetimeInSeconds')} s per loop"),
        ("title", config.get("TaskTitle")),
        ("description", config.get("TaskDescription")),
        ("teams", ", ".join(flow["Teams"]) or "(everyone)"),
        ("output", flow.get("OutputConfig", {}).get("S3OutputPath")),
        ("max open loops", flow.get("MaxOpenLoops") or "-"),
        ("version", f"{flow['Version']} ({flow['Source']}), modified {flow['LastModifiedTime']}"),
        ("created", flow["CreationTime"]),
    ]
    for key, value in rows:
        typer.echo(f"{key:15} {value}")
    if flow.get("Instructions"):
        typer.echo("instructions")
        for line in str(flow["Instructions"]).splitlines():
            typer.echo(f"  {line}")


@flows_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="FlowDefinitionName (lower-case letters, digits, '-').")],
    kind: Annotated[str | None, typer.Option("--kind", "-k", help=f"{KIND_HELP}; default boxes")] = None,
    labels: LabelsOption = None,
    task_count: Annotated[int | None, typer.Option(min=1, max=3, help="Reviewers per item (TaskCount).")] = None,
    task_time_limit: Annotated[
        int | None, typer.Option(help="Seconds a reviewer may hold a task (TaskTimeLimitInSeconds).")
    ] = None,
    lifetime: Annotated[
        int | None, typer.Option(help="Seconds a loop waits for answers (TaskAvailabilityLifetimeInSeconds).")
    ] = None,
    title: Annotated[str | None, typer.Option(help="Task title shown to reviewers.")] = None,
    description: Annotated[str | None, typer.Option(help="Task description shown to reviewers.")] = None,
    instructions: Annotated[str | None, typer.Option(help="Instructions shown beside the task.")] = None,
    instructions_file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Instructions from a text file.")
    ] = None,
    teams: TeamsOption = None,
    output: Annotated[str | None, typer.Option(help="S3OutputPath (default: the service's).")] = None,
    max_open_loops: Annotated[int | None, typer.Option(min=1, help="InProgress loops allowed at once.")] = None,
    from_file: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="A JSON definition; options override it.")
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a flow definition (creating the same definition again changes nothing)."""
    body: dict[str, Any] = json.loads(from_file.read_text()) if from_file else {}
    if not isinstance(body, dict):
        raise typer.BadParameter("--from-file must hold one JSON object")
    body.update(
        _fields(
            kind=kind,
            labels=labels,
            task_count=task_count,
            task_time_limit=task_time_limit,
            lifetime=lifetime,
            title=title,
            description=description,
            instructions=instructions,
            instructions_file=instructions_file,
            teams=teams,
            output=output,
            max_open_loops=max_open_loops,
        )
    )
    body["FlowDefinitionName"] = name
    if not body.get("Labels"):
        raise typer.BadParameter("give at least one --label")
    client = _client(url)
    arn = _run(lambda: client.create(body))
    if as_json:
        _emit({"FlowDefinitionArn": arn})
    else:
        typer.echo(arn)


@flows_app.command("list")
def list_flows(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Every flow definition, newest first."""
    client = _client(url)
    summaries = _run(client.list_flows)
    if as_json:
        _emit(summaries)
        return
    if not summaries:
        typer.echo("no flow definitions yet: create one with hitl review flows create NAME --label LABEL")
        return
    for flow in summaries:
        teams = ",".join(flow["Teams"]) or "*"
        typer.echo(
            f"{flow['FlowDefinitionName']:32} {flow['TaskType']:19} x{flow['TaskCount']}  "
            f"v{flow['Version']:<3} teams={teams:12} labels={','.join(flow['Labels'])}"
        )


@flows_app.command("describe")
def describe(name: str, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """One flow definition in full."""
    client = _client(url)
    flow = _run(lambda: client.describe(name))
    if as_json:
        _emit(flow)
    else:
        _show(flow)


@flows_app.command("update")
def update(
    name: str,
    kind: Annotated[str | None, typer.Option("--kind", "-k", help=KIND_HELP)] = None,
    labels: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Replace the labels (repeat, or comma-separated).")
    ] = None,
    add_labels: Annotated[list[str] | None, typer.Option("--add-label", help="Add a label, keeping the rest.")] = None,
    remove_labels: Annotated[list[str] | None, typer.Option("--remove-label", help="Remove a label.")] = None,
    task_count: Annotated[int | None, typer.Option(min=1, max=3)] = None,
    task_time_limit: Annotated[int | None, typer.Option(help="TaskTimeLimitInSeconds.")] = None,
    lifetime: Annotated[int | None, typer.Option(help="TaskAvailabilityLifetimeInSeconds.")] = None,
    title: Annotated[str | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option()] = None,
    instructions: Annotated[str | None, typer.Option()] = None,
    instructions_file: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
    teams: Annotated[list[str] | None, typer.Option("--team", help="Replace the teams (repeat).")] = None,
    everyone: Annotated[bool, typer.Option("--everyone", help="Clear the teams: every reviewer may work.")] = False,
    output: Annotated[str | None, typer.Option(help="S3OutputPath.")] = None,
    max_open_loops: Annotated[int | None, typer.Option(min=1)] = None,
    expected_version: Annotated[
        int | None, typer.Option(min=1, help="Refuse the change unless the flow is at this version.")
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a flow definition. Loops already started keep their task kind, TaskCount and time
    limits; labels, texts and teams apply to them at once."""
    changes = _fields(
        kind=kind,
        labels=labels,
        task_count=task_count,
        task_time_limit=task_time_limit,
        lifetime=lifetime,
        title=title,
        description=description,
        instructions=instructions,
        instructions_file=instructions_file,
        teams=teams,
        output=output,
        max_open_loops=max_open_loops,
    )
    if everyone:
        if teams:
            raise typer.BadParameter("give --team or --everyone, not both")
        changes["Teams"] = []
    if add_labels:
        changes["AddLabels"] = _split(add_labels)
    if remove_labels:
        changes["RemoveLabels"] = _split(remove_labels)
    if not changes:
        raise typer.BadParameter("nothing to change: give at least one option (hitl review flows update --help)")
    client = _client(url)
    flow = _run(lambda: client.update(name, changes, expected_version))
    if as_json:
        _emit(flow)
    else:
        _show(flow)
