"""Merge human answers into a manifest by ``source-ref``, check the result, export it as COCO. Pure.

A human answer for a ``source-ref`` already in the manifest replaces that line's annotations (in the
line's own label attribute, so one dataset keeps one attribute); a new ``source-ref`` is appended
once. Among several answers for one image the latest ``creation-date`` wins. Unlike AWS's sample
merge, each existing line is written once, whatever the number of answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hitl.domain.manifest import CLASSIFICATION_TYPE, label_attribute

MAX_BOXES = 50
Line = dict[str, Any]


def _labels(line: Mapping[str, Any]) -> tuple[str, Any, Mapping[str, Any]]:
    attribute = label_attribute(line)
    if attribute is None:
        raise ValueError(f"line for {line.get('source-ref')!r} has no label attribute")
    return attribute, line[attribute], line[f"{attribute}-metadata"]


def _created(line: Mapping[str, Any]) -> str:
    return str(_labels(line)[2].get("creation-date") or "")


def merge_manifest(existing: Iterable[Mapping[str, Any]], answers: Iterable[Mapping[str, Any]]) -> list[Line]:
    merged: list[Line] = [dict(line) for line in existing]
    position = {line["source-ref"]: i for i, line in enumerate(merged)}
    for answer in sorted(answers, key=_created):
        source_ref = answer["source-ref"]
        attribute, value, metadata = _labels(answer)
        if source_ref in position:
            line = merged[position[source_ref]]
            target = label_attribute(line) or attribute
            line[target] = value
            line[f"{target}-metadata"] = dict(metadata)
        else:
            position[source_ref] = len(merged)
            merged.append(dict(answer))
    return merged


def check_line(line: Mapping[str, Any]) -> list[str]:
    """The per-line Rekognition rules that a merge can break (docs/formats.md §4); [] when valid."""
    problems: list[str] = []
    source_ref = line.get("source-ref")
    if not isinstance(source_ref, str) or not source_ref.startswith("s3://"):
        problems.append("source-ref is not an s3:// URI")
    try:
        _attribute, value, metadata = _labels(line)
    except ValueError as exc:
        return [*problems, str(exc)]
    if metadata.get("type") == CLASSIFICATION_TYPE:
        if not metadata.get("class-name"):
            problems.append("classification line without class-name")
        return problems
    class_map = metadata.get("class-map") or {}
    annotations = value.get("annotations") or []
    size = (value.get("image_size") or [{}])[0]
    width, height = size.get("width", 0), size.get("height", 0)
    if len(annotations) > MAX_BOXES:
        problems.append(f"{len(annotations)} boxes, at most {MAX_BOXES}")
    if len(metadata.get("objects") or []) != len(annotations):
        problems.append("objects and annotations differ in length")
    scale = 1280 / max(width, height) if max(width, height) > 1280 else 1.0
    for box in annotations:
        if str(box.get("class_id")) not in class_map:
            problems.append(f"class_id {box.get('class_id')} not in class-map")
        left, top, w, h = (box.get(k, -1) for k in ("left", "top", "width", "height"))
        if min(left, top, w, h) < 0 or left + w > width or top + h > height:
            problems.append(f"box {left},{top},{w},{h} outside the {width}x{height} image")
        elif w * scale <= 1 or h * scale <= 1:
            problems.append(f"box {w}x{h} not larger than 1x1 px after resizing")
    return problems


def check_manifest(lines: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """source-ref → problems, for the lines that have any; plus manifest-wide rules under ``*``."""
    found: dict[str, list[str]] = {}
    seen: set[str] = set()
    buckets: set[str] = set()
    for line in lines:
        ref = str(line.get("source-ref"))
        problems = check_line(line)
        if ref in seen:
            problems.append("source-ref appears twice")
        seen.add(ref)
        if ref.startswith("s3://"):
            buckets.add(ref[5:].partition("/")[0])
        if problems:
            found[ref] = problems
    if len(buckets) > 1:
        found["*"] = [f"images in {len(buckets)} buckets, Rekognition wants one"]
    return found


def to_coco(lines: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """COCO detection JSON. Categories are unified by name across the lines' class maps (ids from 1);
    a classification line becomes an annotation without ``bbox`` carrying its ``category_id``."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    categories: dict[str, int] = {}

    def category(name: str) -> int:
        return categories.setdefault(name, len(categories) + 1)

    for image_id, line in enumerate(lines, start=1):
        _attribute, value, metadata = _labels(line)
        entry: dict[str, Any] = {"id": image_id, "file_name": line["source-ref"]}
        if metadata.get("type") == CLASSIFICATION_TYPE:
            images.append(entry)
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": category(metadata["class-name"])}
            )
            continue
        size = (value.get("image_size") or [{}])[0]
        entry.update(width=size.get("width"), height=size.get("height"))
        images.append(entry)
        class_map = metadata.get("class-map") or {}
        for box in value.get("annotations") or []:
            bbox = [box["left"], box["top"], box["width"], box["height"]]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category(class_map.get(str(box["class_id"]), str(box["class_id"]))),
                    "bbox": bbox,
                    "area": box["width"] * box["height"],
                    "iscrowd": 0,
                }
            )
    return {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name, "supercategory": "none"} for name, i in categories.items()],
    }
