"""``hitl dataset``: bring a labelled dataset in (COCO, YOLO, Pascal VOC, Label Studio, manifest) and
write the current one out, in any of those formats."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from hitl.datasets.formats import FORMATS, Format
from hitl.settings import Settings, get_settings

dataset_app = typer.Typer(help="Labelled datasets in and out: import, export.", no_args_is_help=True)
FORMAT_HELP = "manifest | coco | yolo | voc | labelstudio"


def _format(value: str) -> Format:
    if value not in FORMATS:
        raise typer.BadParameter(f"{value!r}: one of {', '.join(FORMATS)}")
    return value  # type: ignore[return-value]


@dataset_app.command("import")
def import_(
    source: Annotated[str, typer.Argument(help="a folder or annotation file, or s3://bucket/prefix")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP)] = "coco",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Upload the images and add one validated manifest line per image to the labelled dataset;
    errors are reported per file or line, by rule. Exit 1 if any line was refused, 2 if nothing could
    be imported. Enough new labels start a training run, as human answers do.

    Layouts: coco: annotations.json + images/; yolo: classes.txt + labels/*.txt + images/;
    voc: annotations/*.xml + images/; labelstudio: tasks.json (JSON export) + images/;
    manifest: manifest.jsonl (source-ref s3:// or relative to the file)."""
    from hitl.datasets.transfer import import_dataset

    settings = get_settings()
    try:
        report = import_dataset(settings, source, _format(fmt))
    except FileNotFoundError as exc:
        typer.echo(f"{exc}", err=True)
        raise typer.Exit(2) from exc
    if report.added:
        _after_import(settings, sorted(report.labels))
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
    else:
        typer.echo(f"read {report.read} image(s); added {report.added}, replaced {report.replaced}")
        if report.labels:
            typer.echo("boxes per label: " + ", ".join(f"{k} {v}" for k, v in sorted(report.labels.items())))
        for rule, count in sorted(report.errors_by_rule.items()):
            typer.echo(f"refused by rule {rule}: {count}")
        for error in (*report.format_errors, *report.line_errors)[:30]:
            typer.echo(f"  {error}")
        for error in report.dataset_errors:
            typer.echo(f"  {error}")
        if report.added or report.replaced:
            typer.echo("next: `hitl train --wait` trains now, or wait for Minimum-Untrained-Images")
    if report.dataset_errors or not (report.added or report.replaced):
        raise typer.Exit(2)
    if report.format_errors or report.line_errors:
        raise typer.Exit(1)


def _after_import(settings: Settings, labels: list[str]) -> None:
    """As a human answer does: enough new labels start a training check."""
    from hitl.loops.dataset import LabelledDataset
    from hitl.training import flow_labels
    from hitl.training.trigger import on_label_added

    after = flow_labels.follow(settings, labels, "import")
    if after is not None:
        typer.echo(f"review flow labels: {', '.join(after)}")
    on_label_added(settings, LabelledDataset(settings).untrained_count())


@dataset_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write (created)")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP)] = "coco",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Write the current labelled dataset (seed manifest and every labelled example; never an
    audit-only answer) with its images under OUT/images/."""
    from hitl.datasets.transfer import export_dataset

    report = export_dataset(get_settings(), _format(fmt), out)
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2) + "\n")
        return
    if not report.images:
        typer.echo("the labelled dataset is empty: label images in the portal, or run `hitl dataset import`")
        return
    typer.echo(f"{report.images} image(s), {report.boxes} box(es) → {report.path}")
    for note in report.skipped[:10]:
        typer.echo(f"  skipped {note}")
