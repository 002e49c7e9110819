"""A2I ``output.json`` answers → Ground Truth augmented-manifest lines (docs/formats.md §2 and §4).

The object-detection conversion reproduces AWS's sample ``convert_a2i_to_augmented_manifest``
field for field (``source-ref`` = ``taskObject``, boxes looked up in the class map, ``image_size``
from ``inputImageProperties`` with depth 3, confidence 1 per object, ``job-name`` = ``a2i/<loop>``,
``creation-date`` = the answer's ``submissionTime``), without its defects: a label missing from the
class map is added instead of raising, and every box is kept. Numbers are copied as they came.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hitl.domain.manifest import (
    CLASSIFICATION_TYPE,
    DEFAULT_CLASSIFICATION_ATTRIBUTE,
    DEFAULT_DETECTION_ATTRIBUTE,
    DETECTION_TYPE,
)
from hitl.domain.matching import LabelledBox

NONE_OF_THE_ABOVE = "None of the Above"
AnswerKind = Literal["boxes", "class", "verification", "unknown"]
BOX_FIELDS = ("left", "top", "width", "height")


class AnswerError(ValueError):
    """An output.json that cannot be converted (a countable reason in ``reason``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class HumanAnswer:
    """One reviewer's answer, whatever the task UI: boxes, an image class, or label verdicts."""

    kind: AnswerKind
    boxes: list[dict[str, Any]] = field(default_factory=list)  # label, left, top, width, height
    image_size: tuple[Any, Any] | None = None
    label: str | None = None  # image class; None = "None of the Above" or no choice
    verified: dict[str, bool] = field(default_factory=dict)
    worker_id: str | None = None
    submission_time: str | None = None

    def labelled_boxes(self) -> list[LabelledBox]:
        return [LabelledBox(b["label"], tuple(float(b[k]) for k in BOX_FIELDS)) for b in self.boxes]  # type: ignore[arg-type]


def _box(raw: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw.get("label"), str) or not all(isinstance(raw.get(k), int | float) for k in BOX_FIELDS):
        raise AnswerError("bad_box", f"a box needs a label and numeric {', '.join(BOX_FIELDS)}")
    return {"label": raw["label"], **{k: raw[k] for k in BOX_FIELDS}}


def parse_answer(answer: Mapping[str, Any]) -> HumanAnswer:
    """One ``humanAnswers[]`` entry. The answer's shape tells the task type (README of the review service)."""
    content = answer.get("answerContent")
    if not isinstance(content, Mapping):
        raise AnswerError("no_answer_content", "humanAnswers[].answerContent is missing")
    common: dict[str, Any] = {"worker_id": answer.get("workerId"), "submission_time": answer.get("submissionTime")}
    annotated = content.get("annotatedResult")
    if isinstance(annotated, Mapping) and "boundingBoxes" in annotated:
        props = annotated.get("inputImageProperties") or {}
        size = (props["width"], props["height"]) if "width" in props and "height" in props else None
        return HumanAnswer("boxes", [_box(b) for b in annotated.get("boundingBoxes") or []], size, **common)
    verification = content.get("labelVerification")
    if isinstance(verification, str):
        # A crowd-form hidden input posts its value as text (the verification task UI's JSON).
        try:
            verification = json.loads(verification)
        except ValueError as exc:
            raise AnswerError("bad_verification", "labelVerification is not JSON") from exc
    if isinstance(verification, Mapping):
        verdicts = {str(v["label"]): bool(v.get("verified")) for v in verification.get("labels") or []}
        return HumanAnswer("verification", verified=verdicts, **common)
    for value in content.values():
        # crowd-image-classifier: {"<name>": {"label": ...}}, the element's name is free.
        if isinstance(value, Mapping) and "label" in value:
            label = value.get("label")
            chosen = label if isinstance(label, str) and label and label != NONE_OF_THE_ABOVE else None
            return HumanAnswer("class", label=chosen, **common)
    return HumanAnswer("unknown", **common)


def human_answers(output: Mapping[str, Any]) -> list[HumanAnswer]:
    answers = output.get("humanAnswers")
    if not isinstance(answers, list) or not answers:
        raise AnswerError("no_answers", "output.json has no humanAnswers")
    return [parse_answer(a) for a in answers]


def class_map_for(labels: Sequence[str], extra: Iterable[str] = ()) -> dict[str, str]:
    """``{"0": first label, ...}``; labels only seen in answers are appended, so none is lost."""
    names = list(dict.fromkeys([*labels, *extra]))
    return {str(i): name for i, name in enumerate(names)}


def _class_id(class_map: Mapping[str, str], label: str) -> int:
    # As the reference: the first key whose value is the label.
    return int(next(key for key, value in class_map.items() if value == label))


def detection_line(
    source_ref: str,
    loop_name: str,
    boxes: Sequence[Mapping[str, Any]],
    image_size: tuple[Any, Any],
    class_map: Mapping[str, str],
    creation_date: str | None,
    attribute: str = DEFAULT_DETECTION_ATTRIBUTE,
    *,
    confidences: Sequence[float] | None = None,
    consensus: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An object-detection manifest line as a JSON-ready dict; ``class_map`` must hold every label.

    ``confidences``: per box, the share of reviewers who drew it (1 each when absent);
    ``consensus``: ``{"workers", "agreement"}`` of several reviewers, kept in the metadata.
    """
    annotations = [
        {
            "class_id": _class_id(class_map, b["label"]),
            "width": b["width"],
            "top": b["top"],
            "height": b["height"],
            "left": b["left"],
        }
        for b in boxes
    ]
    shares = list(confidences) if confidences is not None else [1] * len(annotations)
    metadata: dict[str, Any] = {
        "job-name": f"a2i/{loop_name}",
        "class-map": dict(class_map),
        "human-annotated": "yes",
        "objects": [{"confidence": _share(c)} for c in shares],
        "creation-date": creation_date,
        "type": DETECTION_TYPE,
    }
    if consensus:
        metadata["consensus"] = dict(consensus)
    return {
        "source-ref": source_ref,
        attribute: {
            "annotations": annotations,
            "image_size": [{"width": image_size[0], "height": image_size[1], "depth": 3}],
        },
        f"{attribute}-metadata": metadata,
    }


def _share(value: float) -> float | int:
    """A confidence as Ground Truth writes it: 1 when certain, else rounded to 3 places."""
    return 1 if value >= 1 else round(value, 3)


def classification_line(
    source_ref: str,
    loop_name: str,
    label: str,
    class_map: Mapping[str, str],
    creation_date: str | None,
    attribute: str = DEFAULT_CLASSIFICATION_ATTRIBUTE,
    *,
    confidence: float = 1.0,
    consensus: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "confidence": _share(confidence),
        "class-name": label,
        "human-annotated": "yes",
        "creation-date": creation_date,
        "type": CLASSIFICATION_TYPE,
        "job-name": f"a2i/{loop_name}",
    }
    if consensus:
        metadata["consensus"] = dict(consensus)
    return {"source-ref": source_ref, attribute: _class_id(class_map, label), f"{attribute}-metadata": metadata}


def task_object(output: Mapping[str, Any]) -> str:
    content = output.get("inputContent")
    uri = content.get("taskObject") if isinstance(content, Mapping) else None
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise AnswerError("no_task_object", "inputContent.taskObject is not an s3:// URI")
    return uri


def input_labels(output: Mapping[str, Any]) -> list[str]:
    content = output.get("inputContent")
    labels = content.get("labels") if isinstance(content, Mapping) else None
    return [x for x in labels if isinstance(x, str)] if isinstance(labels, list) else []


def convert_a2i_to_augmented_manifest(
    output: Mapping[str, Any], class_map: Mapping[str, str] | None = None, attribute: str = DEFAULT_DETECTION_ATTRIBUTE
) -> dict[str, Any]:
    """The reference conversion of one bounding-box output.json (its first answer)."""
    answer = human_answers(output)[0]
    if answer.kind != "boxes" or answer.image_size is None:
        raise AnswerError("not_boxes", "the first answer is not a bounding-box answer with image properties")
    labels = [b["label"] for b in answer.boxes]
    cmap = extend_class_map(class_map, labels) if class_map else class_map_for(input_labels(output), labels)
    return detection_line(
        task_object(output),
        str(output.get("humanLoopName")),
        answer.boxes,
        answer.image_size,
        cmap,
        answer.submission_time,
        attribute,
    )


def extend_class_map(class_map: Mapping[str, str], labels: Iterable[str]) -> dict[str, str]:
    """The given class map, kept as is (its ids may be sparse), plus any label it lacks."""
    found = dict(class_map)
    next_id = max((int(k) for k in found), default=-1) + 1
    for label in labels:
        if label not in found.values():
            found[str(next_id)] = label
            next_id += 1
    return found
