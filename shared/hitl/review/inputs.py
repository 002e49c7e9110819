"""The InputContent contract between the dispatcher and the review service.

``{"taskObject": "s3://bucket/key", "initialValue": <prediction>, "labels": [...],
"routeReason": "low_confidence" | "audit" | "annotation", ...}``; unknown keys are kept and ignored.
``initialValue`` per task type (all optional):

- BoundingBox: ``[{"label", "left", "top", "width", "height", "confidence"}]`` in pixels;
- ImageClassification: ``{"label", "confidence"}``, a label string, or a list of either (best first);
- LabelVerification: ``[{"label", "confidence"}]`` or label strings: each is verified yes/no.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hitl.aws import parse_s3_uri
from hitl.review.errors import ValidationError
from hitl.review.flows import FlowDefinition


@dataclass(frozen=True)
class TaskInput:
    task_object: str
    bucket: str
    key: str
    document: dict[str, Any]

    @property
    def initial_value(self) -> Any:
        return self.document.get("initialValue")


def parse(raw: object, max_chars: int, allowed_buckets: frozenset[str]) -> TaskInput:
    if not isinstance(raw, str) or not raw:
        raise ValidationError("HumanLoopInput.InputContent is required")
    if len(raw) > max_chars:
        raise ValidationError(f"InputContent must be at most {max_chars} characters")
    try:
        document = json.loads(raw)
    except json.JSONDecodeError:
        raise ValidationError("InputContent must be a JSON document") from None
    if not isinstance(document, dict):
        raise ValidationError("InputContent must be a JSON object")
    task_object = document.get("taskObject")
    if not isinstance(task_object, str):
        raise ValidationError("InputContent.taskObject must be an s3:// URI")
    try:
        bucket, key = parse_s3_uri(task_object)
    except ValueError:
        raise ValidationError("InputContent.taskObject must be an s3:// URI") from None
    if allowed_buckets and bucket not in allowed_buckets:
        raise ValidationError(f"InputContent.taskObject bucket {bucket!r} is not served by this service")
    labels = document.get("labels")
    if labels is not None and (
        not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels)
    ):
        raise ValidationError("InputContent.labels must be a non-empty list of strings")
    return TaskInput(task_object=task_object, bucket=bucket, key=key, document=document)


def task_labels(flow: FlowDefinition, document: dict[str, Any]) -> list[str]:
    """The labels a reviewer chooses from: the input's own list when given, else the flow's."""
    labels = document.get("labels")
    if isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels):
        return list(dict.fromkeys(labels))
    return list(flow.labels)
