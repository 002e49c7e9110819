"""Training, prediction, artifacts and manifest-driven training on small sets."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from hitl.domain.manifest_validation import DatasetRejected
from hitl.model.artifact import ArtifactError, ModelArtifact
from hitl.model.backbone import (
    BUILDS,
    DEFAULT_BUILD,
    DIGESTS,
    LEGACY_BUILD,
    QUANTIZED_FROM,
    Backbone,
    shared_backbone,
)
from hitl.model.classification import ClassificationConfig, ClassificationHead
from hitl.model.detection import DetectionConfig
from hitl.model.predictor import LocalPredictor
from hitl.model.training import TrainConfig, evaluate_artifact, train, train_from_manifest
from hitl.scenes import face_nonface_set, generate_scene, scene_examples
from tests.unit.model.headers import with_header


def test_box_model_learns_faces(box_model: ModelArtifact) -> None:
    assert box_model.kind == "detection"
    assert box_model.labels == ("face",)
    report = box_model.evaluation
    assert report is not None
    assert report["f1"] >= 0.75
    assert report["ap50"] >= 0.8
    assert 0 < box_model.thresholds["face"] <= 100


def test_predictions_are_sorted_boxes_inside_the_image(box_model: ModelArtifact) -> None:
    predictor = LocalPredictor(box_model, "v0001")
    scene = generate_scene("test", 0)
    found = predictor.predict(scene.image, min_confidence=0.0)
    assert found
    assert found == sorted(found, key=lambda p: -p.confidence)
    for p in found:
        assert p.box is not None
        assert 0 <= p.confidence <= 100
        assert p.box.left >= 0
        assert p.box.top >= 0
        assert p.box.left + p.box.width <= 640
        assert p.box.top + p.box.height <= 480
    # Without min_confidence only labels at or above their assumed threshold are returned.
    kept = predictor.predict(scene.image)
    assert kept, "the scene's face is found at the model's own threshold"
    assert all(p.confidence >= box_model.thresholds["face"] for p in kept)
    assert kept == [p for p in found if p.confidence >= box_model.thresholds["face"]]


def test_any_image_size_is_accepted(box_model: ModelArtifact) -> None:
    predictor = LocalPredictor(box_model, "v0001")
    image = np.ascontiguousarray(generate_scene("test", 1).image[:300, :200])
    found = predictor.predict(image, min_confidence=0.0)
    assert found, "a cropped image still yields candidate boxes"
    for p in found:
        assert p.box is not None
        assert p.box.left + p.box.width <= 200
        assert p.box.top + p.box.height <= 300
    with pytest.raises(ValueError):
        predictor.predict(np.zeros((10, 10), np.uint8))


def test_image_label_model(label_model: ModelArtifact) -> None:
    assert label_model.kind == "classification"
    report = label_model.evaluation
    assert report is not None
    assert report["top1_macro_f1"] >= 0.85
    predictor = LocalPredictor(label_model, "v0002")
    found = predictor.predict(np.zeros((40, 40, 3), np.uint8), min_confidence=0.0)
    assert {p.label for p in found} == {"face", "non-face"}
    assert all(p.box is None for p in found)
    assert sum(p.confidence for p in found) == pytest.approx(100, abs=0.01)


def test_artifact_round_trip_is_exact(box_model: ModelArtifact, label_model: ModelArtifact) -> None:
    image = generate_scene("test", 2).image
    for artifact in (box_model, label_model):
        again = ModelArtifact.from_bytes(artifact.to_bytes())
        assert again.thresholds == artifact.thresholds
        assert again.labels == artifact.labels
        assert LocalPredictor(again, "x").predict(image, 0.0) == LocalPredictor(artifact, "x").predict(image, 0.0)


def test_an_image_label_model_keeps_the_input_sizes_it_was_trained_with() -> None:
    """A version trained before the default sizes changed embeds at its own sizes, so it predicts as
    it did: its weights fit that embedding's length only."""
    examples = face_nonface_set("train", 3).examples()
    older = train(examples, TrainConfig(classification=ClassificationConfig(sizes=(96, 160))))
    again = ModelArtifact.from_bytes(older.to_bytes())
    head = again.head()
    assert isinstance(head, ClassificationHead)
    assert head.config.sizes == (96, 160) != ClassificationConfig().sizes
    image = examples[0][0]
    assert LocalPredictor(again, "x").predict(image, 0.0) == LocalPredictor(older, "x").predict(image, 0.0)


def test_a_model_runs_on_the_backbone_build_it_was_trained_on(box_model: ModelArtifact) -> None:
    assert box_model.backbone == DEFAULT_BUILD
    assert ModelArtifact.from_bytes(box_model.to_bytes()).backbone == DEFAULT_BUILD
    assert LocalPredictor(box_model, "new")._backbone is shared_backbone(DEFAULT_BUILD)
    image = generate_scene("test", 3).image
    examples = scene_examples("train", 4)
    # A version trained on MobileNetV2's int8 build keeps running on it, as it predicted before.
    mobilenet = train(examples, backbone=shared_backbone("mobilenet_v2_int8"))
    again = ModelArtifact.from_bytes(mobilenet.to_bytes())
    assert again.backbone == "mobilenet_v2_int8"
    assert LocalPredictor(again, "v").predict(image, 0.0) == LocalPredictor(mobilenet, "v").predict(image, 0.0)
    # An artifact from before the builds were named was trained on MobileNetV2's export, and runs on it.
    export = train(examples, backbone=shared_backbone(LEGACY_BUILD))
    legacy = ModelArtifact.from_bytes(with_header(export, backbone=None))
    assert legacy.backbone == LEGACY_BUILD
    legacy_predictor = LocalPredictor(legacy, "old")
    assert legacy_predictor._backbone is shared_backbone(LEGACY_BUILD)
    assert legacy_predictor.predict(image, 0.0) == LocalPredictor(export, "old").predict(image, 0.0)


def test_an_unknown_backbone_build_is_refused(box_model: ModelArtifact) -> None:
    with pytest.raises(ArtifactError, match="resnet"):
        ModelArtifact.from_bytes(with_header(box_model, backbone="resnet50"))


def test_a_backbone_is_named_by_its_build() -> None:
    with pytest.raises(ValueError, match=", ".join(sorted(BUILDS))):
        Backbone("resnet50")
    assert Backbone(LEGACY_BUILD, threads=1).build == LEGACY_BUILD


def test_a_backbone_file_with_other_bytes_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuilt file that differs by one byte is not the build its models were trained on."""
    for build, path in BUILDS.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == DIGESTS[build], f"{path} is not {build}"
    graph = bytearray(BUILDS[DEFAULT_BUILD].read_bytes())
    graph[-1] ^= 1
    altered = tmp_path / "altered.onnx"
    altered.write_bytes(bytes(graph))
    monkeypatch.setitem(BUILDS, DEFAULT_BUILD, altered)
    with pytest.raises(ValueError, match="restore the file"):
        Backbone(DEFAULT_BUILD, threads=1)


@pytest.mark.parametrize("quantized", sorted(QUANTIZED_FROM))
def test_an_int8_build_quantizes_its_export(quantized: str) -> None:
    """Same maps, shapes and channels, up to int8 rounding: a wrong or stale int8 file fails here."""
    image = generate_scene("test", 4).image
    fp16 = shared_backbone(QUANTIZED_FROM[quantized]).maps(image, 640)
    int8 = shared_backbone(quantized).maps(image, 640)
    for exact, rounded in ((fp16.s16, int8.s16), (fp16.s32, int8.s32)):
        assert exact.shape == rounded.shape
        cosine = float((exact * rounded).sum() / (np.linalg.norm(exact) * np.linalg.norm(rounded)))
        assert cosine > 0.9


def test_the_builds_differ_and_report_their_embedding_size() -> None:
    """The default build is not the legacy one (a model trained today must not run on the maps of
    another network), and each build's pooled embedding has the length its graph declares."""
    image = generate_scene("test", 4).image
    new, old = shared_backbone(DEFAULT_BUILD), shared_backbone(LEGACY_BUILD)
    assert new.maps(image, 640).s16.shape[0] != old.maps(image, 640).s16.shape[0]
    for backbone in (new, old):
        assert backbone.embed([image], 96).shape == (1, backbone.embedding_size)
        assert backbone.embed([], 96).shape == (0, backbone.embedding_size)


def test_artifact_rejects_foreign_bytes() -> None:
    with pytest.raises(ArtifactError):
        ModelArtifact.from_bytes(b"\x80\x04not an npz")


def test_two_box_labels() -> None:
    examples = scene_examples("train", 6, distractor_label="patch")
    artifact = train(examples)
    assert artifact.labels == ("face", "patch")
    report = evaluate_artifact(artifact, scene_examples("test", 6, distractor_label="patch"))
    assert set(report.labels) == {"face", "patch"}
    assert report.labels["face"].f1 > 0.5


def test_train_from_manifest_validates_trains_and_sets_thresholds() -> None:
    train_set = scene_examples("train", 4, source_prefix="s3://bkt/s/")
    test_set = scene_examples("test", 4, source_prefix="s3://bkt/s/")
    images = {line.source_ref: image for image, line in train_set + test_set}
    broken = '{"source-ref": "s3://bkt/s/missing.png"'
    result = train_from_manifest(
        [line.to_json() for _, line in train_set] + [broken],  # 1 of 5 invalid: within the budget
        images.__getitem__,
        test_lines=[line.to_dict() for _, line in test_set],
    )
    assert result.train_report.invalid_lines == 1
    assert result.train_report.errors[0].rule == "json"
    assert result.evaluation is not None
    assert result.artifact.thresholds == result.evaluation.thresholds
    assert result.artifact.info["train_images"] == 4


def test_rejected_dataset_fails_with_a_summary() -> None:
    examples = scene_examples("train", 2, source_prefix="s3://bkt/s/")
    lines = [line.to_json() for _, line in examples] + ["{bad", "{worse"]
    with pytest.raises(DatasetRejected) as caught:
        train_from_manifest(lines, lambda ref: examples[0][0])
    assert "REJECTED" in str(caught.value)
    assert "invalid-budget" in str(caught.value)


def test_train_and_test_may_not_share_images() -> None:
    examples = scene_examples("train", 2, source_prefix="s3://bkt/s/")
    lines = [line.to_json() for _, line in examples]
    with pytest.raises(DatasetRejected, match="train-test-overlap"):
        train_from_manifest(lines, lambda ref: examples[0][0], test_lines=lines[:1])


def test_training_reads_the_channels_off_whichever_images_fit_the_first_model() -> None:
    """The first (pre-mining) model is fitted on a sample of the images; the head's channel count
    comes from the backbone's maps of that sample, whichever images it holds."""
    examples = scene_examples("train", 3)
    for seed in range(3):  # with one bootstrap image of six variants, most seeds leave out the first
        artifact = train(examples, TrainConfig(seed=seed, detection=DetectionConfig(bootstrap_images=1)))
        assert LocalPredictor(artifact, "x").predict(examples[0][0], 0.0) is not None
