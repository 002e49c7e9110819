"""What a detection produces, in the shapes the rest of the pipeline stores and exchanges."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

# annotation: an operator asked for this image to be labelled (model-assisted annotation).
# cold_start: no model version serves yet, so a human labels the image from scratch.
RouteReason = Literal["low_confidence", "audit", "annotation", "cold_start"]
# Reasons whose answer becomes training data (an audit-only answer never does).
LABELLING_REASONS: frozenset[str] = frozenset({"low_confidence", "annotation", "cold_start"})
# The model version a cold-start record names: none served it.
NO_MODEL_VERSION = "none"


class PixelBox(BaseModel):
    """A box in pixels, top-left origin (the Ground Truth and A2I convention)."""

    left: float
    top: float
    width: float
    height: float

    def ratios(self, image_width: int, image_height: int) -> RatioBox:
        return RatioBox(
            left=self.left / image_width,
            top=self.top / image_height,
            width=self.width / image_width,
            height=self.height / image_height,
        )


class RatioBox(BaseModel):
    """A box as fractions of the image (the Rekognition ``Geometry.BoundingBox`` convention)."""

    left: float
    top: float
    width: float
    height: float

    def pixels(self, image_width: int, image_height: int) -> PixelBox:
        return PixelBox(
            left=self.left * image_width,
            top=self.top * image_height,
            width=self.width * image_width,
            height=self.height * image_height,
        )


class Prediction(BaseModel):
    """One label the model found: image-level (no box) or an object (box in pixels)."""

    label: str
    confidence: float = Field(ge=0.0, le=100.0)
    box: PixelBox | None = None


class DetectedLabel(BaseModel):
    label: str
    confidence: float = Field(ge=0.0, le=100.0)
    box_px: PixelBox | None = None
    box_ratio: RatioBox | None = None

    @classmethod
    def from_prediction(cls, p: Prediction, width: int, height: int) -> DetectedLabel:
        return cls(
            label=p.label,
            confidence=p.confidence,
            box_px=p.box,
            box_ratio=p.box.ratios(width, height) if p.box else None,
        )


class RouteDecision(BaseModel):
    reasons: list[RouteReason] = Field(default_factory=list)
    top_confidence: float | None = None
    threshold: float | None = None
    sample_seq: int | None = None
    # The routing strategy that decided (Routing-Strategy); None on records from before strategies.
    strategy: str | None = None
    # How much a review of this image is worth to the strategy (higher first); the review queue's
    # order and the budget's ranking. None: no preference (oldest first).
    priority: float | None = None

    @property
    def review(self) -> bool:
        return bool(self.reasons)


class Timings(BaseModel):
    fetch_ms: float = 0.0
    decode_ms: float = 0.0
    inference_ms: float = 0.0
    total_ms: float = 0.0
    queue_wait_ms: float | None = None


class DetectionRecord(BaseModel):
    detection_id: str
    image_id: str
    image_uri: str
    width: int
    height: int
    model_version: str
    backend: str
    labels: list[DetectedLabel]
    route: RouteDecision
    timings: Timings
    source: str = "api"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # The human loop of a routed detection (set by the dispatcher and the ingestor).
    loop_name: str | None = None
    loop_status: str | None = None
    answer_outcome: str | None = None

    @property
    def top_confidence(self) -> float | None:
        return max((label.confidence for label in self.labels), default=None)


def detection_id_for(image_id: str) -> str:
    """One detection per accepted image; the id is also a valid A2I loop-name stem."""
    return f"det-{image_id[:32]}"
