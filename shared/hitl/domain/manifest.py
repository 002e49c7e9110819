"""Ground Truth manifest line formats (JSON Lines, one image per line): object detection and
image classification, as Rekognition Custom Labels and SageMaker read them (docs/formats.md §4).

The label attribute's name is free (``bounding-box``, ``brand``…); its metadata sits under
``<attribute>-metadata``. :func:`label_attribute` finds it when a caller does not say.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DETECTION_TYPE = "groundtruth/object-detection"
CLASSIFICATION_TYPE = "groundtruth/image-classification"
DEFAULT_DETECTION_ATTRIBUTE = "bounding-box"
DEFAULT_CLASSIFICATION_ATTRIBUTE = "label"

_ALIASED = ConfigDict(populate_by_name=True, extra="allow")


class ImageSize(BaseModel):
    model_config = _ALIASED
    width: int
    height: int
    depth: int = 3


class BoxAnnotation(BaseModel):
    """One box in pixels, top-left origin; ``class_id`` is a key of the class map."""

    model_config = _ALIASED
    class_id: int
    left: float
    top: float
    width: float
    height: float


class ObjectConfidence(BaseModel):
    model_config = _ALIASED
    confidence: float


class BoxLabels(BaseModel):
    model_config = _ALIASED
    image_size: list[ImageSize]
    annotations: list[BoxAnnotation]


class DetectionMetadata(BaseModel):
    model_config = _ALIASED
    objects: list[ObjectConfidence]
    class_map: dict[str, str] = Field(alias="class-map")
    type: Literal["groundtruth/object-detection"] = "groundtruth/object-detection"
    human_annotated: str = Field(default="yes", alias="human-annotated")
    creation_date: str | None = Field(default=None, alias="creation-date")
    job_name: str | None = Field(default=None, alias="job-name")


class ClassificationMetadata(BaseModel):
    model_config = _ALIASED
    confidence: float
    class_name: str = Field(alias="class-name")
    type: Literal["groundtruth/image-classification"] = "groundtruth/image-classification"
    human_annotated: str = Field(default="yes", alias="human-annotated")
    creation_date: str | None = Field(default=None, alias="creation-date")
    job_name: str | None = Field(default=None, alias="job-name")


class DetectionLine(BaseModel):
    """An object-detection manifest line."""

    source_ref: str
    attribute: str = DEFAULT_DETECTION_ATTRIBUTE
    labels: BoxLabels
    metadata: DetectionMetadata

    @property
    def kind(self) -> Literal["detection"]:
        return "detection"

    def boxes(self) -> list[tuple[str, BoxAnnotation]]:
        """(label name, box) pairs; the name comes from the class map."""
        cmap = self.metadata.class_map
        return [(cmap[str(a.class_id)], a) for a in self.labels.annotations]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source-ref": self.source_ref,
            self.attribute: self.labels.model_dump(mode="json", by_alias=True),
            f"{self.attribute}-metadata": self.metadata.model_dump(mode="json", by_alias=True, exclude_none=True),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


class ClassificationLine(BaseModel):
    """An image-classification manifest line: one label for the whole image."""

    source_ref: str
    attribute: str = DEFAULT_CLASSIFICATION_ATTRIBUTE
    class_id: int
    metadata: ClassificationMetadata

    @property
    def kind(self) -> Literal["classification"]:
        return "classification"

    @property
    def label(self) -> str:
        return self.metadata.class_name

    def to_dict(self) -> dict[str, Any]:
        return {
            "source-ref": self.source_ref,
            self.attribute: self.class_id,
            f"{self.attribute}-metadata": self.metadata.model_dump(mode="json", by_alias=True, exclude_none=True),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


ManifestLine = DetectionLine | ClassificationLine


def label_attribute(raw: Mapping[str, Any]) -> str | None:
    """The attribute that carries the label: the key ``k`` whose ``k-metadata`` is also present."""
    for key in raw:
        if key != "source-ref" and not key.endswith("-metadata") and f"{key}-metadata" in raw:
            return key
    return None


def parse_line(raw: Mapping[str, Any] | str, attribute: str | None = None) -> ManifestLine:
    """Parse one line (JSON text or its decoded object). Raises ValueError (pydantic's included)."""
    obj: Mapping[str, Any] = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(obj, Mapping):
        raise ValueError("a manifest line must be a JSON object")  # noqa: TRY004 - callers catch ValueError
    attr = attribute or label_attribute(obj)
    if attr is None or attr not in obj or f"{attr}-metadata" not in obj:
        raise ValueError("no label attribute with a matching '-metadata' entry")
    meta = obj[f"{attr}-metadata"]
    source_ref = obj.get("source-ref")
    if not isinstance(source_ref, str):
        raise ValueError("'source-ref' missing or not a string")  # noqa: TRY004 - callers catch ValueError
    if isinstance(meta, Mapping) and meta.get("type") == CLASSIFICATION_TYPE:
        return ClassificationLine(
            source_ref=source_ref,
            attribute=attr,
            class_id=obj[attr],
            metadata=ClassificationMetadata.model_validate(meta),
        )
    return DetectionLine(
        source_ref=source_ref,
        attribute=attr,
        labels=BoxLabels.model_validate(obj[attr]),
        metadata=DetectionMetadata.model_validate(meta),
    )


def detection_line(
    source_ref: str,
    width: int,
    height: int,
    boxes: list[tuple[str, tuple[float, float, float, float]]],
    class_map: Mapping[str, str],
    *,
    attribute: str = DEFAULT_DETECTION_ATTRIBUTE,
    job_name: str | None = None,
    creation_date: str | None = None,
) -> DetectionLine:
    """Build a detection line from (label, (left, top, width, height)) boxes; every label must be in
    ``class_map`` (id string → name)."""
    ids = {name: int(key) for key, name in class_map.items()}
    return DetectionLine(
        source_ref=source_ref,
        attribute=attribute,
        labels=BoxLabels(
            image_size=[ImageSize(width=width, height=height, depth=3)],
            annotations=[
                BoxAnnotation(class_id=ids[label], left=b[0], top=b[1], width=b[2], height=b[3]) for label, b in boxes
            ],
        ),
        metadata=DetectionMetadata.model_validate(
            {
                "objects": [{"confidence": 1} for _ in boxes],
                "class-map": dict(class_map),
                "job-name": job_name,
                "creation-date": creation_date,
            }
        ),
    )


def classification_line(
    source_ref: str,
    class_id: int,
    class_name: str,
    *,
    attribute: str = DEFAULT_CLASSIFICATION_ATTRIBUTE,
    job_name: str | None = None,
    creation_date: str | None = None,
) -> ClassificationLine:
    return ClassificationLine(
        source_ref=source_ref,
        attribute=attribute,
        class_id=class_id,
        metadata=ClassificationMetadata.model_validate(
            {"confidence": 1, "class-name": class_name, "job-name": job_name, "creation-date": creation_date}
        ),
    )
