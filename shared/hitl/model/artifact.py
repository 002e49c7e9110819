"""A trained model version as one file: a compressed ``.npz`` of plain arrays plus a JSON header.

No pickle anywhere: loading uses ``allow_pickle=False`` and rebuilds every object from arrays and
JSON, so an artifact from an untrusted bucket cannot run code.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from hitl.model.backbone import BUILDS, DEFAULT_BUILD, LEGACY_BUILD
from hitl.model.calibration import Calibration
from hitl.model.classification import ClassificationConfig, ClassificationHead
from hitl.model.detection import DetectionConfig, DetectionHead
from hitl.model.evaluation import EvaluationReport
from hitl.model.refine import Refiner

FORMAT = "hitl-model/1"
ModelKind = Literal["detection", "classification"]
HEADER = "__header__"


class ArtifactError(ValueError):
    """The bytes are not a model artifact this code can read."""


@dataclass(frozen=True)
class ModelArtifact:
    kind: ModelKind
    labels: tuple[str, ...]
    arrays: dict[str, np.ndarray]
    config: dict[str, Any]
    thresholds: dict[str, float] = field(default_factory=dict)  # assumed threshold per label, 0–100
    evaluation: dict[str, Any] | None = None  # EvaluationReport.to_dict() of the test set
    info: dict[str, Any] = field(default_factory=dict)  # training facts: images, seconds, …
    calibration: Calibration = field(default_factory=Calibration)  # raw → calibrated probability
    backbone: str = DEFAULT_BUILD  # the backbone build whose maps the head was fitted on

    @classmethod
    def from_head(cls, head: DetectionHead | ClassificationHead, info: dict[str, Any] | None = None) -> ModelArtifact:
        if isinstance(head, DetectionHead):
            arrays = {"anchors": head.anchors, "w16": head.w16, "w32": head.w32, "bias": head.bias}
            if head.refiner is not None:
                arrays.update(head.refiner.arrays())
            if head.shared is not None:
                arrays["shared"] = head.shared.astype(np.uint8)
            calibration = head.calibration or Calibration()
            return cls("detection", head.labels, arrays, asdict(head.config), info=info or {}, calibration=calibration)
        arrays = {"weights": head.weights, "bias": head.bias}
        return cls("classification", head.labels, arrays, asdict(head.config), info=info or {})

    def head(self) -> DetectionHead | ClassificationHead:
        a = self.arrays
        if self.kind == "detection":
            config = DetectionConfig.from_dict(self.config)
            refiner = None
            if "r_weights" in a:  # artifacts from before the second stage have none
                refiner = Refiner(a["r_weights"], a["r_bias"], a["r_reg_weights"], a["r_reg_bias"], config.refine)
            shared = a["shared"].astype(bool) if "shared" in a else None  # older artifacts: labels apart
            return DetectionHead(
                self.labels, a["anchors"], a["w16"], a["w32"], a["bias"], config, refiner, shared=shared
            )
        cfg = dict(self.config)
        cfg["sizes"] = tuple(cfg["sizes"])
        return ClassificationHead(self.labels, a["weights"], a["bias"], ClassificationConfig(**cfg))

    def with_calibration(self, calibration: Calibration) -> ModelArtifact:
        return replace(self, calibration=calibration)

    def with_evaluation(self, report: EvaluationReport) -> ModelArtifact:
        """Adopt the report's assumed thresholds (Rekognition's rule: best F1 on the test set)."""
        return replace(self, thresholds=report.thresholds, evaluation=report.to_dict())

    def to_bytes(self) -> bytes:
        header = {
            "format": FORMAT,
            "kind": self.kind,
            "labels": list(self.labels),
            "config": self.config,
            "thresholds": self.thresholds,
            "evaluation": self.evaluation,
            "info": self.info,
            "calibration": self.calibration.to_dict(),
            "backbone": self.backbone,
        }
        buffer = io.BytesIO()
        payload = {HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        payload.update({f"a_{k}": np.asarray(v) for k, v in self.arrays.items()})
        np.savez_compressed(buffer, **payload)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ModelArtifact:
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                header = json.loads(npz[HEADER].tobytes().decode())
                arrays = {k[2:]: npz[k] for k in npz.files if k.startswith("a_")}
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"not a model artifact: {exc}") from exc
        if header.get("format") != FORMAT:
            raise ArtifactError(f"unsupported artifact format {header.get('format')!r}")
        backbone = header.get("backbone", LEGACY_BUILD)
        if backbone not in BUILDS:
            raise ArtifactError(f"trained on backbone build {backbone!r}, which this code does not have")
        return cls(
            kind=header["kind"],
            labels=tuple(header["labels"]),
            arrays=arrays,
            config=header["config"],
            thresholds={k: float(v) for k, v in header.get("thresholds", {}).items()},
            evaluation=header.get("evaluation"),
            info=header.get("info", {}),
            calibration=Calibration.from_dict(header.get("calibration")),
            backbone=backbone,
        )
