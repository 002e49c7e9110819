"""The trainer on the real parts: moto's server (S3, SSM, EventBridge), the real Redis, real training.

Covers: v1 from the seed set, the gate rejecting a version below the minimum, no retraining storm
after a rejection, two checks at once (one trains), rollback, and promotion while detections run.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import redis as redis_lib

from hitl import aws
from hitl.adapters.detection import LocalBackend
from hitl.domain.images import decode
from hitl.loops.dataset import LabelledDataset
from hitl.model.registry import ModelRegistry
from hitl.params import ParameterStore
from hitl.scenes import generate_scenes, upload_set
from hitl.settings import Settings
from hitl.training.trainer import RunOutcome, Trainer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(settings: Settings) -> Settings:
    local = settings.model_copy(
        update={"bucket": "hitl-train-test", "key_prefix": "traintest", "params_path": "/traintest/",
                "params_cache_seconds": 0.0, "model_cache_seconds": 0.2}
    )
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=local.bucket)
    client = redis_lib.Redis.from_url(local.redis_url)
    for key in client.scan_iter("traintest:*"):
        client.delete(key)
    params = ParameterStore(local)
    params.ensure_defaults()
    params.set("Minimum-Untrained-Images", "4")
    params.set("Minimum-F1-Score", "0.3")
    upload_set(generate_scenes("train", 6, seed=0, source_prefix=f"s3://{local.bucket}/seed/"),
               local.s3_uri(local.seed_manifest_key))
    upload_set(generate_scenes("test", 10, seed=0, source_prefix=f"s3://{local.bucket}/test/"),
               local.s3_uri(local.test_manifest_key))
    return local


# Scene numbers never used twice in this module, whichever tests run and in whatever order.
_next_scene = itertools.count()


def new_labels(settings: Settings, count: int) -> None:
    start = next(_next_scene)
    for _ in range(count - 1):
        next(_next_scene)
    add_labels(settings, start, count)


def top_up(settings: Settings, untrained: int) -> None:
    """Add fresh labels until exactly ``untrained`` wait for training (never fewer than there are)."""
    missing = untrained - Trainer(settings).counts().untrained
    assert missing >= 0, "more labels wait than this test expects"
    if missing:
        new_labels(settings, missing)


@pytest.fixture(scope="module")
def first(env: Settings) -> RunOutcome:
    """v0001 trained on the seed set; every test that needs a serving version starts from it."""
    return Trainer(env).check(force=True)


def add_labels(settings: Settings, start: int, count: int) -> None:
    files = generate_scenes("train", start + count, seed=3, source_prefix=f"s3://{settings.bucket}/labelled/")
    files = files[start:]
    upload_set(files, f"s3://{settings.bucket}/scratch/labels-{start}.jsonl")
    dataset = LabelledDataset(settings)
    for index, (_, line) in enumerate(files, start=start):
        assert dataset.add(f"det-{index:032x}", line)


def test_first_version_trains_on_the_seed_and_serves(env: Settings, first: RunOutcome) -> None:
    outcome = first
    assert outcome.outcome == "promoted", outcome
    assert outcome.version == "v0001"
    assert outcome.serving_f1 is None
    registry = ModelRegistry(env)
    assert registry.serving_version() == "v0001"
    meta = registry.describe("v0001")
    assert meta.test_manifest_uri
    assert meta.train_manifest_uri
    assert meta.info["train_images"] == 6


def test_too_few_labels_skip(env: Settings, first: RunOutcome) -> None:
    top_up(env, 2)
    outcome = Trainer(env).check()
    assert outcome.outcome == "skipped"
    assert "2 untrained" in outcome.reason


def test_rejected_version_is_kept_and_not_retrained_every_poll(env: Settings, first: RunOutcome) -> None:
    params = ParameterStore(env)
    params.set("Minimum-F1-Score", "1.01")  # above any F1 (at most 1): the gate must reject
    top_up(env, 5)  # 5 untrained ≥ 4
    versions_before = len(ModelRegistry(env).versions())
    outcome = Trainer(env).check()
    assert outcome.outcome == "rejected", outcome
    registry = ModelRegistry(env)
    assert registry.describe(outcome.version or "").status == "rejected"
    assert registry.serving_version() == first.version, "a rejected version never serves"
    # The next polls see the same labels: no retraining storm.
    for _ in range(3):
        again = Trainer(env).check()
        assert again.outcome == "skipped"
        assert "rejected" in again.reason
    assert len(registry.versions()) == versions_before + 1
    # Enough new labels since the attempt: it trains again. With 9 more labelled scenes than v0001 saw,
    # the new version scores at least v0001's F1 on the same test split, so it is promoted.
    params.set("Minimum-F1-Score", "0.3")
    top_up(env, 9)
    third = Trainer(env).check()
    assert third.outcome == "promoted", third
    # The serving F1 the gate compared against is v0001's own F1, measured when it was trained.
    assert third.serving_f1 == pytest.approx(registry.describe(first.version).f1)
    assert third.f1 == pytest.approx(registry.describe(third.version or "").f1)
    assert (third.f1 or 0) >= third.serving_f1
    assert registry.serving_version() == third.version
    assert Trainer(env).counts().untrained == 0


def test_two_checks_at_once_train_once(env: Settings, first: RunOutcome) -> None:
    new_labels(env, 4)
    before = len(ModelRegistry(env).versions())
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run() -> None:
        trainer = Trainer(env)
        barrier.wait()
        outcomes.append(trainer.check(force=True).outcome)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trained = [o for o in outcomes if o in ("promoted", "rejected")]
    assert len(trained) == 1, outcomes
    assert len(ModelRegistry(env).versions()) == before + 1


def test_promotion_and_rollback_under_load_fail_no_detection(env: Settings, first: RunOutcome) -> None:
    registry = ModelRegistry(env)
    versions = [v for v in registry.versions() if registry.describe(v).status != "rejected"]
    if len(versions) < 2:  # run on its own: a second servable version, a copy of the first
        copy = registry.publish(registry.artifact(versions[0]), "")
        versions.append(copy.version)
    assert len(versions) >= 2
    backend = LocalBackend(env)
    png, _ = generate_scenes("test", 1, seed=9, source_prefix="s3://x/")[0]
    image = decode(png, env.image_limits())
    seen: set[str] = set()
    errors: list[Exception] = []
    stop = threading.Event()

    def detect_forever() -> None:
        while not stop.is_set():
            try:
                version, _ = backend.detect(image, png, "s3://x/y.png")
                seen.add(version)
            except Exception as exc:
                errors.append(exc)

    workers = [threading.Thread(target=detect_forever) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        for target in (versions[0], versions[-1], versions[0]):
            registry.promote(target, reason="test swap")
            deadline = time.monotonic() + 30
            while backend.cache.version != target:
                assert time.monotonic() < deadline, "the detector did not follow the promotion"
                time.sleep(0.05)
        registry.rollback(reason="test rollback")
        assert registry.serving_version() == versions[-1]
        deadline = time.monotonic() + 30
        while backend.cache.version != versions[-1]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert errors == []
    assert {versions[0], versions[-1]} <= seen
