"""Where a model is trained and served, behind one interface chosen by ``HITL_TRAIN_BACKEND``.

- ``embedded``: the project's own trainable model; its artifact is stored in the registry;
- ``rekognition``: Rekognition Custom Labels (CreateProjectVersion from the registry's manifest
  snapshots, StartProjectVersion with Minimum-Inference-Units, then the replaced versions stop);
- ``sagemaker``: the built-in object-detection algorithm, incremental training from the serving
  model, served by UpdateEndpoint.

The trainer (:mod:`hitl.training.trainer`) owns the lock, the snapshot, the gate, the notices and the
registry's pointer; a backend only trains, scores, deploys and retires.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from hitl.logs import get_logger
from hitl.model.data import S3Images, write_manifest
from hitl.model.registry import ModelRegistry, ModelVersion
from hitl.settings import Settings

log = get_logger("hitl.training.backends")


class TrainingFailed(RuntimeError):
    """The service could not train (or start) a version; the reason is the service's."""


@dataclass(frozen=True)
class TrainingSet:
    train_lines: list[dict[str, Any]]
    test_lines: list[dict[str, Any]]


@dataclass(frozen=True)
class Candidate:
    version: str
    score: float  # the gate's measure: F1 on the test split (validation mAP for SageMaker)
    metric: str = "f1"
    train_images: int = 0
    info: dict[str, Any] = field(default_factory=dict)


class TrainingBackend(Protocol):
    name: str

    def train(self, data: TrainingSet) -> Candidate:
        """Train on the snapshot; the candidate is in the registry (status ``candidate``)."""
        ...

    def serving_score(self, serving: str, data: TrainingSet) -> float | None:
        """The serving version's score, comparable with the candidate's (same test split)."""
        ...

    def deploy(self, candidate: Candidate, inference_units: int) -> None:
        """Make the candidate ready to serve (started / endpoint updated); raises if it cannot."""
        ...

    def retire(self, serving: ModelVersion) -> list[str]:
        """After the pointer moved to ``serving``: stop what it replaced. Returns what was stopped."""
        ...


def dataset_shape(lines: list[dict[str, Any]]) -> tuple[str, list[str], str]:
    """(kind, label names, label attribute) of Ground Truth manifest lines."""
    labels: set[str] = set()
    kind, attribute = "detection", ""
    for line in lines:
        for key, value in line.items():
            if not key.endswith("-metadata") or not isinstance(value, dict):
                continue
            attribute = key[: -len("-metadata")]
            if "class-map" in value:
                labels.update(str(name) for name in value["class-map"].values())
            if "class-name" in value:
                kind = "classification"
                labels.add(str(value["class-name"]))
    return kind, sorted(labels), attribute


def _manifest_text(lines: list[dict[str, Any]]) -> str:
    return write_manifest(lines)


class EmbeddedBackend:
    """The project's own model, trained in this process; the registry holds its artifact."""

    name = "embedded"

    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.images = S3Images()

    def train(self, data: TrainingSet) -> Candidate:
        from hitl.model.training import train_from_manifest

        result = train_from_manifest(
            [json.dumps(line) for line in data.train_lines],
            self.images.image,
            test_lines=[json.dumps(line) for line in data.test_lines] if data.test_lines else None,
            images=self.images.info,
        )
        if result.evaluation is None:
            raise TrainingFailed(f"no test manifest at {self.settings.test_manifest_key}")
        version = self.registry.publish(
            result.artifact,
            _manifest_text(data.train_lines),
            test_manifest=_manifest_text(data.test_lines),
        )
        train_images = int(result.artifact.info.get("train_images", len(data.train_lines)))
        return Candidate(version.version, float(result.evaluation.f1), train_images=train_images)

    def serving_score(self, serving: str, data: TrainingSet) -> float | None:
        """The serving version scored on this same test split (its own assumed thresholds)."""
        from hitl.domain.manifest_validation import validate_manifest
        from hitl.model.training import Examples, evaluate_artifact, parse_valid

        raw = [json.dumps(line) for line in data.test_lines]
        parsed = parse_valid(raw, validate_manifest(raw, self.images.info))
        artifact = self.registry.artifact(serving)
        report = evaluate_artifact(artifact, Examples.loading(parsed, self.images.image), thresholds=None)
        return float(report.f1)

    def deploy(self, candidate: Candidate, inference_units: int) -> None:
        return None  # detectors load the artifact when the pointer names it

    def retire(self, serving: ModelVersion) -> list[str]:
        return []


def recorded_score(registry: ModelRegistry, version: str, metric: str) -> float | None:
    """A managed-service version's score as recorded at training (same fixed test split)."""
    metrics = registry.describe(version).metrics or {}
    value = metrics.get(metric)
    return None if value is None else float(value)


def create_training_backend(settings: Settings, registry: ModelRegistry | None = None) -> TrainingBackend:
    registry = registry or ModelRegistry(settings)
    if settings.train_backend == "rekognition":
        from hitl.training.rekognition import RekognitionBackend

        return RekognitionBackend(settings, registry)
    if settings.train_backend == "sagemaker":
        from hitl.training.sagemaker import SageMakerBackend

        return SageMakerBackend(settings, registry)
    return EmbeddedBackend(settings, registry)


def rollback(settings: Settings, reason: str, registry: ModelRegistry | None = None) -> str:
    """Serve the previously serving version again. A managed service's previous version is made
    ready first (Rekognition: started, SageMaker: the endpoint updated back), then the pointer
    moves, then the rolled-back one is stopped. Returns the version serving now."""
    from hitl.model.registry import RegistryError

    registry = registry or ModelRegistry(settings)
    pointer = registry.pointer()
    if pointer is None or not pointer.history:
        raise RegistryError("nothing to roll back to")
    previous = registry.describe(pointer.history[-1])
    backend = create_training_backend(settings, registry)
    if backend.name != "embedded" and previous.info.get("backend") == backend.name:
        backend.deploy(Candidate(previous.version, previous.f1 or 0.0, info=previous.info), _units(settings))
    new = registry.rollback(reason=reason)
    backend.retire(registry.describe(new.version))
    return new.version


def promote(settings: Settings, version: str, reason: str, registry: ModelRegistry | None = None) -> str:
    """An operator's promotion: a managed service's version is made ready first (started, endpoint
    updated), then the pointer moves, then what it replaced is stopped."""
    registry = registry or ModelRegistry(settings)
    meta = registry.describe(version)
    backend = create_training_backend(settings, registry)
    if backend.name != "embedded" and meta.info.get("backend") == backend.name:
        backend.deploy(Candidate(meta.version, meta.f1 or 0.0, info=meta.info), _units(settings))
    pointer = registry.promote(version, reason=reason)
    backend.retire(registry.describe(pointer.version))
    return pointer.version


def _units(settings: Settings) -> int:
    from hitl.params import ParameterStore

    return int(ParameterStore(settings).snapshot()["Minimum-Inference-Units"])
