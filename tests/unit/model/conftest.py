"""Small trained models shared by the model tests (trained once per session: a few seconds)."""

from __future__ import annotations

import pytest

from hitl.model.artifact import ModelArtifact
from hitl.model.training import evaluate_artifact, train
from hitl.scenes import face_nonface_set, scene_examples


@pytest.fixture(scope="session")
def box_model() -> ModelArtifact:
    artifact = train(scene_examples("train", 8))
    return artifact.with_evaluation(evaluate_artifact(artifact, scene_examples("test", 12)))


@pytest.fixture(scope="session")
def label_model() -> ModelArtifact:
    artifact = train(face_nonface_set("train", 5).examples())
    return artifact.with_evaluation(evaluate_artifact(artifact, face_nonface_set("test", 10).examples()))
