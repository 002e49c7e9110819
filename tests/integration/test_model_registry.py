"""The S3 model registry against moto's server: publish, describe, promote, rollback, load, hot swap."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

from hitl import aws
from hitl.model import __main__ as model_cli
from hitl.model.artifact import ModelArtifact
from hitl.model.registry import ModelRegistry, NoServingModel, RegistryError, ServingModelCache
from hitl.model.training import evaluate_artifact, train
from hitl.scenes import face_nonface_set, generate_scene, generate_scenes, upload_set
from hitl.settings import Settings, get_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def artifact() -> ModelArtifact:
    model = train(face_nonface_set("train", 3).examples())
    return model.with_evaluation(evaluate_artifact(model, face_nonface_set("test", 5).examples()))


@pytest.fixture
def registry(settings: Settings, request: pytest.FixtureRequest) -> ModelRegistry:
    s3 = aws.client("s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=settings.bucket)
    # Each test gets its own prefix: tests stay independent on one moto server.
    return ModelRegistry(settings.model_copy(update={"models_prefix": f"models-{request.node.name}/"}))


MANIFEST = '{"source-ref": "s3://hitl-test/a.png"}\n'


def test_publish_allocates_sortable_versions_with_snapshots(registry: ModelRegistry, artifact: ModelArtifact) -> None:
    first = registry.publish(artifact, MANIFEST, test_manifest=MANIFEST)
    second = registry.publish(artifact, MANIFEST)
    assert (first.version, second.version) == ("v0001", "v0002")
    assert registry.versions() == ["v0001", "v0002"]
    meta = registry.describe("v0001")
    assert meta.status == "candidate"
    assert meta.kind == "classification"
    assert meta.parent is None
    assert meta.metrics is not None
    assert artifact.evaluation is not None
    assert meta.f1 == pytest.approx(artifact.evaluation["f1"])
    assert meta.thresholds == artifact.thresholds
    assert meta.calibration == artifact.calibration.to_dict()  # kept per version with the thresholds
    assert registry.artifact(meta.version).calibration == artifact.calibration
    bucket, key = aws.parse_s3_uri(meta.train_manifest_uri or "")
    assert aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode() == MANIFEST
    assert meta.test_manifest_uri
    assert second.test_manifest_uri is None


def test_promote_rollback_and_parents(registry: ModelRegistry, artifact: ModelArtifact) -> None:
    with pytest.raises(NoServingModel):
        ServingModelCache(registry, refresh_seconds=0).get()
    v1 = registry.publish(artifact, MANIFEST).version
    registry.promote(v1)
    v2 = registry.publish(artifact, MANIFEST).version
    assert registry.describe(v2).parent == v1  # the parent is the serving version
    pointer = registry.promote(v2)
    assert pointer.version == v2
    assert pointer.history == [v1]
    assert registry.describe(v1).status == "retired"
    assert registry.describe(v2).status == "serving"
    back = registry.rollback("F1 dropped")
    assert back.version == v1
    assert back.history == []
    assert registry.describe(v2).status == "rejected"
    assert registry.describe(v1).status == "serving"
    with pytest.raises(RegistryError):
        registry.rollback()


def test_load_and_hot_swap_without_restart(registry: ModelRegistry, artifact: ModelArtifact) -> None:
    v1 = registry.publish(artifact, MANIFEST).version
    registry.promote(v1)
    cache = ServingModelCache(registry, refresh_seconds=0)
    model = cache.get()
    assert model.version == v1
    image = face_nonface_set("test", 1).images[0]
    assert model.predict(image, min_confidence=0.0)
    v2 = registry.publish(artifact, MANIFEST).version
    registry.promote(v2)
    assert cache.get().version == v2
    assert np.allclose(
        [p.confidence for p in cache.get().predict(image, 0.0)], [p.confidence for p in model.predict(image, 0.0)]
    )


def test_corrupted_artifact_is_refused(registry: ModelRegistry, artifact: ModelArtifact) -> None:
    meta = registry.publish(artifact, MANIFEST)
    bucket, key = aws.parse_s3_uri(meta.artifact_uri)
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=b"tampered")
    with pytest.raises(RegistryError, match="checksum"):
        registry.load(meta.version)


def test_train_from_s3_manifest_publish_and_promote(settings: Settings, registry: ModelRegistry) -> None:
    """The trainer's path: scenes uploaded to S3, validated against the real images, trained,
    evaluated, published and promoted through ``python -m hitl.model``."""
    prefix = f"s3://{settings.bucket}/scenes-it/"
    train_uri = upload_set(generate_scenes("train", 4, source_prefix=prefix), prefix + "train.manifest")
    test_uri = upload_set(generate_scenes("test", 4, source_prefix=prefix), prefix + "test.manifest")
    os.environ["HITL_MODELS_PREFIX"] = registry.prefix
    get_settings.cache_clear()
    try:
        code = model_cli.main(["--train", train_uri, "--test", test_uri, "--publish", "--promote-min-f1", "0.0"])
    finally:
        os.environ.pop("HITL_MODELS_PREFIX")
        get_settings.cache_clear()
    assert code == 0
    meta = registry.describe("v0001")
    assert meta.status == "serving"
    assert meta.metrics is not None
    assert meta.kind == "detection"
    assert registry.load("v0001").predict(generate_scene("test", 0).image, min_confidence=0.0)


def test_rejected_manifest_exits_with_the_summary(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"s3://{settings.bucket}/scenes-bad/"
    files = generate_scenes("train", 3, source_prefix=prefix)
    upload_set(files, prefix + "train.manifest")
    s3 = aws.client("s3")
    # Two of three images are unreadable (not PNG/JPEG bytes): 67 % invalid, over the 20 % budget.
    for _, line in files[:2]:
        bucket, key = aws.parse_s3_uri(line["source-ref"])
        s3.put_object(Bucket=bucket, Key=key, Body=b"GIF89a not an image")
    assert model_cli.main(["--train", prefix + "train.manifest"]) == 2
    err = capsys.readouterr().err
    assert "REJECTED" in err
    assert "[invalid-budget]" in err
    assert "line 1: [image-readable]" in err
