"""The simulated reviewer: answers portal tasks from Ground Truth, optionally with deliberate errors.

Truth is a Ground Truth manifest (JSON Lines keyed by ``source-ref``, docs/formats.md §4); a task is
answered when its ``taskObject`` equals a ``source-ref``, and skipped otherwise. With an error rate
P, a seeded random generator corrupts that fraction of answers (a box shifted by half its size or
dropped, another class chosen, a verdict flipped), so runs are reproducible.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hitl.review.flows import NONE_OF_THE_ABOVE
from hitl.review.portal_client import PortalClient, PortalHTTPError


@dataclass(frozen=True)
class Truth:
    boxes: list[dict[str, Any]]  # label, left, top, width, height
    label: str | None  # image-level class


def _truth_line(line: dict[str, Any]) -> Truth:
    boxes: list[dict[str, Any]] = []
    label: str | None = None
    for attribute, value in line.items():
        meta = line.get(f"{attribute}-metadata")
        if attribute.endswith("-metadata") or not isinstance(meta, dict):
            continue
        class_map = {str(k): str(v) for k, v in (meta.get("class-map") or {}).items()}
        if isinstance(value, dict) and "annotations" in value:
            for ann in value["annotations"]:
                name = class_map.get(str(ann.get("class_id")), str(ann.get("class_id")))
                boxes.append({"label": name, **{k: int(ann[k]) for k in ("left", "top", "width", "height")}})
        elif meta.get("class-name"):
            label = str(meta["class-name"])
    return Truth(boxes=boxes, label=label)


def load_truth(path: Path) -> dict[str, Truth]:
    found: dict[str, Truth] = {}
    for raw in path.read_text().splitlines():
        if raw.strip():
            line = json.loads(raw)
            found[str(line["source-ref"])] = _truth_line(line)
    return found


def answer_for(
    task: dict[str, Any], truth: Truth, size: tuple[int, int], corrupt: bool, rng: random.Random
) -> dict[str, Any]:
    labels: list[str] = task["labels"]
    if task["taskType"] == "BoundingBox":
        boxes = [dict(b) for b in truth.boxes if b["label"] in labels]
        if corrupt and boxes:
            victim = rng.randrange(len(boxes))
            if rng.random() < 0.5:
                boxes.pop(victim)
            else:
                b = boxes[victim]
                b["left"] = min(size[0] - b["width"], b["left"] + max(1, b["width"] // 2))
                b["top"] = min(size[1] - b["height"], b["top"] + max(1, b["height"] // 2))
        return {
            "annotatedResult": {
                "boundingBoxes": boxes,
                "inputImageProperties": {"width": size[0], "height": size[1]},
            }
        }
    if task["taskType"] == "ImageClassification":
        label = truth.label if truth.label in labels else NONE_OF_THE_ABOVE
        if corrupt:
            label = rng.choice([x for x in [*labels, NONE_OF_THE_ABOVE] if x != label])
        return {"category": {"label": label}}
    present = {b["label"] for b in truth.boxes} | ({truth.label} if truth.label else set())
    verdicts = [{"label": x, "verified": (x in present) != corrupt} for x in task["verifyLabels"]]
    return {"labelVerification": {"labels": verdicts}}


@dataclass
class Report:
    answered: int = 0
    corrupted: int = 0
    skipped: int = 0
    lost: int = 0  # taken by someone else or closed between queue and answer
    names: list[str] = field(default_factory=list)


def run(
    client: PortalClient,
    truth: dict[str, Truth],
    *,
    error_rate: float = 0.0,
    seed: int = 0,
    max_tasks: int | None = None,
    until_idle: float = 0.0,
    poll: float = 0.5,
    log: Callable[[str], None] = lambda message: None,
) -> Report:
    """Answer tasks until ``max_tasks`` are done or the queue stays empty for ``until_idle`` s."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not a secret
    report = Report()
    idle_since = time.monotonic()
    while max_tasks is None or report.answered < max_tasks:
        tasks = client.queue()
        if not tasks:
            if time.monotonic() - idle_since >= until_idle:
                break
            time.sleep(poll)
            continue
        idle_since = time.monotonic()
        for summary in tasks:
            if max_tasks is not None and report.answered >= max_tasks:
                break
            name = summary["name"]
            known = truth.get(str(summary.get("taskObject")))
            try:
                if known is None:
                    client.open_task(name)
                    client.skip(name)
                    report.skipped += 1
                    log(f"skipped {name}: {summary.get('taskObject')} is not in the truth file")
                    continue
                task = client.open_task(name)
                size = client.image_size(task)
                corrupt = rng.random() < error_rate
                client.submit(name, answer_for(task, known, size, corrupt, rng))
            except PortalHTTPError as error:
                if error.status in (404, 409):
                    report.lost += 1
                    continue
                raise
            report.answered += 1
            report.corrupted += int(corrupt)
            report.names.append(name)
            log(f"answered {name}{' (corrupted)' if corrupt else ''}")
    return report
