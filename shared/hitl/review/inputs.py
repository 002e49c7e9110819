"""The InputContent contract between the dispatcher and the review service.

``{"taskObject": "s3://bucket/key", "initialValue": <prediction>, "labels": [...],
"routeReason": "low_confidence" | "audit" | "annotation", "priority": <number>, ...}``; unknown keys
are kept and ignored. ``priority`` (optional): reviewers are offered higher numbers first, then the
oldest; without it a task ranks as priority 0.
``initialValue`` per task type (all optional):

- BoundingBox: ``[{"label", "left", "top", "width", "height", "confidence"}]`` in pixels;
- ImageClassification: ``{"label", "confidence"}``, a label string, or a list of either (best first);
- LabelVerification: ``[{"label", "confidence"}]`` or label strings: each is verified yes/no.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class ImageKeys:
    """Where task images may come from: buckets, and key prefixes (or, without any, all keys
    outside the pipeline's own data such as models and records)."""

    buckets: frozenset[str]
    prefixes: tuple[str, ...] = ()
    excluded: tuple[str, ...] = field(default=())

    def check(self, bucket: str, key: str) -> None:
        if self.buckets and bucket not in self.buckets:
            raise ValidationError(f"InputContent.taskObject bucket {bucket!r} is not served by this service")
        segments = key.split("/")
        if (
            not key
            or key.startswith("/")
            or any(s in ("", ".", "..") for s in segments[:-1])
            or segments[-1] in ("", ".", "..")
            or any(ord(c) < 32 or c in "\\\x7f" for c in key)
        ):
            raise ValidationError("InputContent.taskObject key is not a plain object key")
        if self.prefixes and not key.startswith(self.prefixes):
            raise ValidationError("InputContent.taskObject is outside the image prefixes this service serves")
        if not self.prefixes and self.excluded and key.startswith(self.excluded):
            raise ValidationError("InputContent.taskObject points at the pipeline's own data, not an image")


class JSONInputError(ValueError):
    """Not JSON, a non-finite number, or nested too deeply."""


def _no_constant(name: str) -> Any:
    raise JSONInputError(f"{name} is not a JSON number")


def _depth_ok(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def loads_strict(raw: str | bytes, max_depth: int) -> Any:
    """JSON without NaN/Infinity and nested at most ``max_depth`` deep; JSONInputError otherwise."""
    try:
        found = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise JSONInputError(f"JSON nested deeper than {max_depth} levels") from None
    except JSONInputError:
        raise
    except ValueError as error:
        raise JSONInputError(f"not valid JSON ({str(error)[:80]})") from None
    if not _depth_ok(found, max_depth):
        raise JSONInputError(f"JSON nested deeper than {max_depth} levels")
    return found


RASTER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def raster_type(body: bytes) -> str | None:
    """The media type of a PNG, JPEG, GIF or WebP image by its leading bytes; None otherwise."""
    for magic, kind in RASTER_SIGNATURES:
        if body.startswith(magic):
            return kind
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    return None


def parse(raw: object, max_chars: int, keys: ImageKeys | frozenset[str], max_depth: int = 32) -> TaskInput:
    if not isinstance(keys, ImageKeys):
        keys = ImageKeys(keys)
    if not isinstance(raw, str) or not raw:
        raise ValidationError("HumanLoopInput.InputContent is required")
    if len(raw) > max_chars:
        raise ValidationError(f"InputContent must be at most {max_chars} characters")
    try:
        document = loads_strict(raw, max_depth)
    except JSONInputError as error:
        raise ValidationError(f"InputContent must be a JSON document: {error}") from None
    if not isinstance(document, dict):
        raise ValidationError("InputContent must be a JSON object")
    task_object = document.get("taskObject")
    if not isinstance(task_object, str):
        raise ValidationError("InputContent.taskObject must be an s3:// URI")
    try:
        bucket, key = parse_s3_uri(task_object)
    except ValueError:
        raise ValidationError("InputContent.taskObject must be an s3:// URI") from None
    keys.check(bucket, key)
    labels = document.get("labels")
    if labels is not None and (
        not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels)
    ):
        raise ValidationError("InputContent.labels must be a non-empty list of strings")
    priority = document.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int | float)):
        raise ValidationError("InputContent.priority must be a number")
    return TaskInput(task_object=task_object, bucket=bucket, key=key, document=document)


def task_priority(document: dict[str, Any]) -> float:
    """The order a task is offered in (higher first); 0 without one."""
    value = document.get("priority")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def task_labels(flow: FlowDefinition, document: dict[str, Any]) -> list[str]:
    """The labels a reviewer chooses from: the input's own list when given, else the flow's."""
    labels = document.get("labels")
    if isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels):
        return list(dict.fromkeys(labels))
    return list(flow.labels)
