"""Training on Rekognition Custom Labels: create a version, wait, read its F1, and deploy it.

Running models are billed per inference unit and minute, so deployment stops every other running
version of the project once the new one runs, and a version that fails the gate is never started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hitl import aws
from hitl.logs import get_logger
from hitl.model.registry import ModelRegistry, ModelVersion
from hitl.settings import Settings
from hitl.training.backends import Candidate, TrainingFailed, TrainingSet, dataset_shape, recorded_score

log = get_logger("hitl.training.rekognition")

TERMINAL_TRAINING = {"TRAINING_COMPLETED", "TRAINING_FAILED"}
RUNNING_LIKE = {"RUNNING", "STARTING"}


__all__ = ["Poller", "RekognitionBackend", "RekognitionTrainer", "TrainedVersion", "TrainingFailed"]


@dataclass(frozen=True)
class TrainedVersion:
    version_name: str
    arn: str
    f1: float


@dataclass
class Poller:
    """Exponential backoff between DescribeProjectVersions calls, bounded in total time."""

    initial: float = 30.0
    maximum: float = 300.0
    timeout: float = 6 * 3600.0
    sleep: Callable[[float], None] = time.sleep

    def waits(self) -> Any:
        waited, delay = 0.0, self.initial
        while waited < self.timeout:
            yield
            self.sleep(delay)
            waited += delay
            delay = min(self.maximum, delay * 2)
        raise TimeoutError(f"gave up after {self.timeout:.0f}s")


class RekognitionTrainer:
    def __init__(self, project_arn: str, output_bucket: str, output_prefix: str, poller: Poller | None = None) -> None:
        self.project_arn = project_arn
        self.output_bucket = output_bucket
        self.output_prefix = output_prefix
        self.poller = poller or Poller()

    @property
    def client(self) -> Any:
        return aws.client("rekognition")

    def _describe(self, version_name: str) -> dict[str, Any]:
        response = self.client.describe_project_versions(ProjectArn=self.project_arn, VersionNames=[version_name])
        descriptions = response.get("ProjectVersionDescriptions", [])
        if not descriptions:
            raise TrainingFailed(f"version {version_name} is not described")
        return dict(descriptions[0])

    def train(
        self, version_name: str, train_manifest: tuple[str, str], test_manifest: tuple[str, str]
    ) -> TrainedVersion:
        """Train on two manifests (bucket, key) already in S3; returns the version and its F1."""
        arn = self.client.create_project_version(
            ProjectArn=self.project_arn,
            VersionName=version_name,
            OutputConfig={"S3Bucket": self.output_bucket, "S3KeyPrefix": self.output_prefix},
            TrainingData={
                "Assets": [
                    {"GroundTruthManifest": {"S3Object": {"Bucket": train_manifest[0], "Name": train_manifest[1]}}}
                ]
            },
            TestingData={
                "Assets": [
                    {"GroundTruthManifest": {"S3Object": {"Bucket": test_manifest[0], "Name": test_manifest[1]}}}
                ]
            },
        )["ProjectVersionArn"]
        log.info("rekognition_training_started", version=version_name, arn=arn)
        for _ in self.poller.waits():
            description = self._describe(version_name)
            status = description["Status"]
            if status == "TRAINING_FAILED":
                raise TrainingFailed(description.get("StatusMessage", "training failed"))
            if status == "TRAINING_COMPLETED":
                f1 = float(description.get("EvaluationResult", {}).get("F1Score", 0.0))
                return TrainedVersion(version_name, arn, f1)
        raise TrainingFailed("unreachable")  # pragma: no cover - waits() raises first

    def deploy(self, version: TrainedVersion, inference_units: int) -> list[str]:
        """Start ``version``; once it runs, stop every other running version. Returns those stopped."""
        self.start(version, inference_units)
        return self.stop_others(version)

    def start(self, version: TrainedVersion, inference_units: int) -> None:
        """StartProjectVersion and wait until it runs (a running version is started no more)."""
        try:
            self.client.start_project_version(ProjectVersionArn=version.arn, MinInferenceUnits=inference_units)
        except self.client.exceptions.ResourceInUseException:
            log.info("rekognition_version_already_starting", version=version.version_name)  # e.g. a rollback
        for _ in self.poller.waits():
            status = self._describe(version.version_name)["Status"]
            if status == "RUNNING":
                log.info("rekognition_version_running", version=version.version_name, units=inference_units)
                return
            if status in ("FAILED", "STOPPED"):
                raise TrainingFailed(f"version {version.version_name} did not start: {status}")

    def stop_others(self, version: TrainedVersion) -> list[str]:
        """Stop every running or starting version of the project but ``version`` (billed per unit-minute)."""
        stopped = []
        paginator = self.client.get_paginator("describe_project_versions")
        for page in paginator.paginate(ProjectArn=self.project_arn):
            for other in page.get("ProjectVersionDescriptions", []):
                if other["ProjectVersionArn"] != version.arn and other["Status"] in RUNNING_LIKE:
                    self.client.stop_project_version(ProjectVersionArn=other["ProjectVersionArn"])
                    stopped.append(other["ProjectVersionArn"])
        log.info("rekognition_version_deployed", version=version.version_name, stopped=len(stopped))
        return stopped


class RekognitionBackend:
    """``HITL_TRAIN_BACKEND=rekognition``: a version per training run, named as the registry's."""

    name = "rekognition"
    metric = "f1"

    def __init__(self, settings: Settings, registry: ModelRegistry, poller: Poller | None = None) -> None:
        if not settings.rekognition_project_arn:
            raise ValueError("HITL_REKOGNITION_PROJECT_ARN is required for the rekognition training backend")
        self.settings = settings
        self.registry = registry
        poller = poller or Poller(
            settings.training_poll_initial_seconds,
            settings.training_poll_max_seconds,
            settings.training_timeout_seconds,
        )
        self.trainer = RekognitionTrainer(
            settings.rekognition_project_arn, settings.bucket, settings.rekognition_output_prefix, poller
        )

    def train(self, data: TrainingSet) -> Candidate:
        from hitl.model.data import write_manifest

        if not data.test_lines:
            raise TrainingFailed(f"no test manifest at {self.settings.test_manifest_key}")
        kind, labels, _ = dataset_shape(data.train_lines)
        meta = self.registry.reserve(
            kind, labels, write_manifest(data.train_lines), test_manifest=write_manifest(data.test_lines),
            backend=self.name,
        )
        bucket = self.settings.bucket
        try:
            trained = self.trainer.train(
                meta.version,
                (bucket, self.registry.manifest_key(meta.version, "train.manifest")),
                (bucket, self.registry.manifest_key(meta.version, "test.manifest")),
            )
        except Exception as exc:
            self.registry.set_status(meta.version, "rejected", f"training failed: {exc}")
            raise
        info = {"project_arn": self.settings.rekognition_project_arn, "train_images": len(data.train_lines)}
        self.registry.record_training(meta.version, target=trained.arn, metrics={"f1": trained.f1}, info=info)
        return Candidate(meta.version, trained.f1, train_images=len(data.train_lines), info={"target": trained.arn})

    def serving_score(self, serving: str, data: TrainingSet) -> float | None:
        return recorded_score(self.registry, serving, self.metric)

    def deploy(self, candidate: Candidate, inference_units: int) -> None:
        version = TrainedVersion(candidate.version, candidate.info["target"], candidate.score)
        self.trainer.start(version, inference_units)

    def retire(self, serving: ModelVersion) -> list[str]:
        return self.trainer.stop_others(TrainedVersion(serving.version, serving.artifact_uri, serving.f1 or 0.0))
