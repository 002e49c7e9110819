"""A loaded model version behind the :class:`~hitl.model.base.Predictor` contract."""

from __future__ import annotations

import numpy as np

from hitl.domain.records import PixelBox, Prediction
from hitl.model.artifact import ModelArtifact
from hitl.model.backbone import Backbone, shared_backbone
from hitl.model.classification import ClassificationHead
from hitl.model.detection import DetectionHead

DEFAULT_THRESHOLD = 50.0


class LocalPredictor:
    """Immutable after construction, so one instance serves many threads."""

    def __init__(self, artifact: ModelArtifact, version: str, backbone: Backbone | None = None) -> None:
        self._artifact = artifact
        self._version = version
        self._head: DetectionHead | ClassificationHead = artifact.head()
        self._backbone = backbone or shared_backbone(artifact.backbone)

    @property
    def version(self) -> str:
        return self._version

    @property
    def kind(self) -> str:
        return self._artifact.kind

    @property
    def labels(self) -> tuple[str, ...]:
        return self._artifact.labels

    @property
    def artifact(self) -> ModelArtifact:
        return self._artifact

    def _calibrate(self, probability: float) -> float:
        calibration = self._artifact.calibration
        return probability if calibration.is_identity else float(calibration.apply(probability))

    def threshold(self, label: str) -> float:
        """The label's assumed threshold (confidence 0–100, on the calibrated scale)."""
        return self._artifact.thresholds.get(label, DEFAULT_THRESHOLD)

    def predict(self, image: np.ndarray, min_confidence: float | None = None) -> list[Prediction]:
        """Labels found in an H×W×3 uint8 RGB image, by calibrated confidence (0–100), highest first.

        As Rekognition's DetectCustomLabels: without ``min_confidence`` each label's assumed threshold
        applies; ``min_confidence=0`` returns every candidate (for evaluation and review routing).
        """
        if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
            raise ValueError("expected an H×W×3 uint8 RGB image")
        image = np.ascontiguousarray(image[..., :3])
        out: list[Prediction] = []
        if isinstance(self._head, DetectionHead):
            for label, prob, (left, top, width, height) in self._head.detect(self._backbone, image):
                out.append(
                    Prediction(
                        label=label,
                        confidence=_confidence(self._calibrate(prob)),
                        box=PixelBox(left=left, top=top, width=width, height=height),
                    )
                )
        else:
            probs = self._head.probabilities(self._backbone, [image])[0]
            out = [
                Prediction(label=label, confidence=_confidence(self._calibrate(p)))
                for label, p in zip(self.labels, probs, strict=True)
            ]
        keep = [
            p for p in out if p.confidence >= (self.threshold(p.label) if min_confidence is None else min_confidence)
        ]
        keep.sort(key=lambda p: -p.confidence)
        return keep


def _confidence(probability: float) -> float:
    return float(min(100.0, max(0.0, round(probability * 100.0, 3))))
