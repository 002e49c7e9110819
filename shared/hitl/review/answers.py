"""Answer content per task type, in the shape of the matching A2I crowd element.

- BoundingBox (``crowd-bounding-box name="annotatedResult"``)::

    {"annotatedResult": {"boundingBoxes": [{"label", "left", "top", "width", "height"}],
                         "inputImageProperties": {"width", "height"}}}

- ImageClassification (``crowd-image-classifier name="category"``): ``{"category": {"label": L}}``;
  "None of the Above" is the label ``"None of the Above"`` (the category the AWS samples add).
- LabelVerification (one ``crowd-radio-group`` yes/no per predicted label)::

    {"labelVerification": {"labels": [{"label": "face", "verified": true}]}}
"""

from __future__ import annotations

import math
from typing import Any

from hitl.review.errors import PortalError
from hitl.review.flows import NONE_OF_THE_ABOVE, TaskType

MAX_BOXES = 100
MAX_IMAGE_SIDE = 100_000
CLASSIFICATION_NAME = "category"


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PortalError(400, f"{what} must be a finite number")
    if abs(value) > MAX_IMAGE_SIDE * 10:
        raise PortalError(400, f"{what} is out of range")
    return round(value)


def _boxes(content: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    result = content.get("annotatedResult")
    if not isinstance(result, dict):
        raise PortalError(400, "annotatedResult is required")
    props = result.get("inputImageProperties")
    if not isinstance(props, dict):
        raise PortalError(400, "annotatedResult.inputImageProperties is required")
    width = _int(props.get("width"), "image width")
    height = _int(props.get("height"), "image height")
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise PortalError(400, "image size out of range")
    raw_boxes = result.get("boundingBoxes")
    if not isinstance(raw_boxes, list) or len(raw_boxes) > MAX_BOXES:
        raise PortalError(400, f"boundingBoxes must be a list of at most {MAX_BOXES} boxes")
    boxes = []
    for raw in raw_boxes:
        if not isinstance(raw, dict) or raw.get("label") not in labels:
            raise PortalError(400, f"every box needs a label from {labels}")
        box = {k: _int(raw.get(k), k) for k in ("left", "top", "width", "height")}
        if box["left"] < 0 or box["top"] < 0 or box["width"] < 1 or box["height"] < 1:
            raise PortalError(400, "boxes need non-negative positions and a positive size")
        if box["left"] + box["width"] > width or box["top"] + box["height"] > height:
            raise PortalError(400, "boxes must lie inside the image")
        boxes.append({"label": raw["label"], **box})
    return {
        "annotatedResult": {
            "boundingBoxes": boxes,
            "inputImageProperties": {"width": width, "height": height},
        }
    }


def _classification(content: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    chosen = content.get(CLASSIFICATION_NAME)
    label = chosen.get("label") if isinstance(chosen, dict) else None
    if label not in [*labels, NONE_OF_THE_ABOVE]:
        raise PortalError(400, f"{CLASSIFICATION_NAME}.label must be one of {labels} or {NONE_OF_THE_ABOVE!r}")
    return {CLASSIFICATION_NAME: {"label": label}}


def _verification(content: dict[str, Any], asked: list[str]) -> dict[str, Any]:
    result = content.get("labelVerification")
    entries = result.get("labels") if isinstance(result, dict) else None
    if not isinstance(entries, list) or len(entries) > MAX_BOXES:
        raise PortalError(400, "labelVerification.labels must be a list")
    verified = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
            raise PortalError(400, "every verified label needs a label")
        if entry["label"] not in asked:
            raise PortalError(400, f"only the labels asked about may be verified: {asked}")
        if entry["label"] in seen:
            raise PortalError(400, f"label {entry['label']!r} is verified twice")
        seen.add(entry["label"])
        if not isinstance(entry.get("verified"), bool):
            raise PortalError(400, "verified must be true or false")
        verified.append({"label": entry["label"], "verified": entry["verified"]})
    return {"labelVerification": {"labels": verified}}


def validate(task_type: TaskType, content: object, labels: list[str], asked: list[str] | None = None) -> dict[str, Any]:
    """The answer normalised (integers, known keys only); PortalError 400 when malformed.

    ``asked``: the labels a LabelVerification task asks about (default: ``labels``)."""
    if not isinstance(content, dict):
        raise PortalError(400, "the answer must be a JSON object")
    if task_type == "BoundingBox":
        return _boxes(content, labels)
    if task_type == "ImageClassification":
        return _classification(content, labels)
    return _verification(content, asked if asked is not None else labels)


def verification_targets(initial_value: Any) -> list[str]:
    """The labels a LabelVerification task asks about, from the model's prediction."""
    items = initial_value if isinstance(initial_value, list) else [initial_value]
    found = []
    for item in items:
        label = item.get("label") if isinstance(item, dict) else item
        if isinstance(label, str) and label and label not in found:
            found.append(label)
    return found
