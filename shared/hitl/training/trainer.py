"""One training check: decide, snapshot the dataset, train, evaluate, gate, promote — one at a time.

The dataset snapshot is the seed manifest merged with every human-labelled example (a human answer
replaces a seed line of the same ``source-ref``), validated by the Rekognition rules, minus any image
of the fixed test split, which is never trained on. Both the candidate and the serving version are
scored on that same test split, so the gate compares like with like.

Where the model is trained and served is the backend's business (``HITL_TRAIN_BACKEND``,
:mod:`hitl.training.backends`); the lock, snapshot, gate, notices and registry are the same for each.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import redis

from hitl import aws, metrics
from hitl.domain.manifest_validation import DatasetRejected
from hitl.logs import get_logger
from hitl.loops.dataset import LabelledDataset
from hitl.model.data import read_manifest, write_manifest
from hitl.model.registry import ModelRegistry
from hitl.params import ParameterStore
from hitl.settings import Settings
from hitl.training import notices
from hitl.training.backends import TrainingBackend, TrainingFailed, TrainingSet, create_training_backend
from hitl.training.lock import LockHeld, TrainingLock
from hitl.training.policy import LabelCounts, gate, should_train

log = get_logger("hitl.trainer")
# Short, and extended while the run works (TrainingLock.kept_alive): a killed run's lock soon expires.
LOCK_TTL_SECONDS = 120


@dataclass
class RunOutcome:
    outcome: str  # skipped | promoted | rejected | failed | busy
    reason: str
    version: str | None = None
    f1: float | None = None
    serving_f1: float | None = None
    train_images: int = 0
    train_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    def __init__(
        self, settings: Settings, client: redis.Redis | None = None, backend: TrainingBackend | None = None
    ) -> None:
        from hitl.adapters.redis_index import connect

        self.settings = settings
        self.redis = client or connect(settings.redis_url)
        self.params = ParameterStore(settings)
        self.registry = ModelRegistry(settings)
        self.dataset = LabelledDataset(settings, client=self.redis)
        self.backend = backend or create_training_backend(settings, self.registry)
        self.attempt_key = settings.key("training", "attempt_total")

    # --- counts ------------------------------------------------------------------------------
    def counts(self) -> LabelCounts:
        total = int(self.redis.scard(self.dataset.examples_key))  # type: ignore[arg-type]
        untrained = self.dataset.untrained_count()
        at_last_attempt = int(self.redis.get(self.attempt_key) or 0)  # type: ignore[arg-type]
        return LabelCounts(total=total, at_last_success=total - untrained, at_last_attempt=min(at_last_attempt, total))

    # --- the check -----------------------------------------------------------------------------
    def check(self, force: bool = False) -> RunOutcome:
        snapshot = self.params.snapshot()
        lock = TrainingLock(self.redis, self.settings, LOCK_TTL_SECONDS)
        counts = self.counts()
        decision = should_train(
            enabled=bool(snapshot["Enable-Automatic-Training"]) or force,
            running=lock.holder() is not None,
            counts=counts,
            minimum_untrained=0 if force else int(snapshot["Minimum-Untrained-Images"]),
        )
        if not decision.train:
            log.info("training_skipped", reason=decision.reason, untrained=counts.untrained)
            return RunOutcome("skipped", decision.reason)
        try:
            lock.acquire()
        except LockHeld as exc:
            return RunOutcome("busy", str(exc))
        try:
            with lock.kept_alive():
                return self._run(lock, float(snapshot["Minimum-F1-Score"]), int(snapshot["Minimum-Inference-Units"]))
        finally:
            lock.release()

    def _read_manifest(self, key: str) -> list[dict[str, Any]]:
        s3 = aws.client("s3")
        try:
            body = s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read().decode()
        except s3.exceptions.NoSuchKey:
            return []
        return [json.loads(line) for line in read_manifest(body)]

    def _run(self, lock: TrainingLock, minimum_f1: float, inference_units: int) -> RunOutcome:
        started = time.perf_counter()
        trained_keys = [str(k) for k in self.redis.smembers(self.dataset.untrained_key)]  # type: ignore[union-attr]
        total = int(self.redis.scard(self.dataset.examples_key))  # type: ignore[arg-type]
        try:
            return self._train(lock, minimum_f1, inference_units, started, trained_keys, total)
        finally:
            # Recorded once the run ends, however it ends, so the same labels are not attempted again
            # at every poll; a run killed mid-way records nothing, and the next poll retries it.
            self.redis.set(self.attempt_key, total)

    def _train(
        self,
        lock: TrainingLock,
        minimum_f1: float,
        inference_units: int,
        started: float,
        trained_keys: list[str],
        total: int,
    ) -> RunOutcome:
        merged = self.dataset.build_manifest(base=self._read_manifest(self.settings.seed_manifest_key))
        test_lines = self._read_manifest(self.settings.test_manifest_key) or self._carve_test_split(merged)
        test_refs = {line["source-ref"] for line in test_lines}
        # The dataset's snapshot as documented: manifest.jsonl (Ground Truth) and coco.json beside it.
        self.dataset.write_manifest(merged)
        train_lines = [line for line in merged if line["source-ref"] not in test_refs]
        notices.publish(
            self.settings, "started", labels=total, train_lines=len(train_lines), token=lock.token,
            backend=self.backend.name,
        )
        data = TrainingSet(train_lines, test_lines)
        try:
            candidate = self.backend.train(data)
        except DatasetRejected as exc:
            notices.publish(self.settings, "failed", reason=str(exc))
            return RunOutcome("failed", f"dataset rejected: {exc}")
        except TrainingFailed as exc:  # the service's (or the set-up's) own reason: no traceback needed
            log.warning("training_failed", backend=self.backend.name, reason=str(exc))
            notices.publish(self.settings, "failed", reason=str(exc))
            return RunOutcome("failed", str(exc))
        except Exception as exc:
            log.exception("training_failed", backend=self.backend.name)
            notices.publish(self.settings, "failed", reason=str(exc))
            return RunOutcome("failed", str(exc))

        score = candidate.score
        serving = self.registry.serving_version()
        serving_score = self.backend.serving_score(serving, data) if serving else None
        version = candidate.version
        seconds = time.perf_counter() - started
        metrics.TRAINING_SECONDS.observe(seconds)
        metrics.MODEL_F1.labels(version).set(score)
        notices.publish(
            self.settings, "completed", version=version, f1=score, serving_f1=serving_score, metric=candidate.metric
        )
        outcome = partial(RunOutcome, version=version, f1=score, serving_f1=serving_score,
                          train_images=candidate.train_images, train_seconds=seconds)
        decision = gate(score, serving_score, minimum_f1)
        if not decision.promote or not lock.is_current():
            reason = decision.reason if decision.promote is False else "the training lock was lost"
            self.registry.set_status(version, "rejected", reason)
            notices.publish(self.settings, "rejected", version=version, f1=score, reason=reason)
            return outcome("rejected", reason)
        try:
            # Ready to serve before the pointer names it (started, endpoint updated).
            self.backend.deploy(candidate, inference_units)
        except Exception as exc:
            log.exception("deploy_failed", backend=self.backend.name, version=version)
            self.registry.set_status(version, "rejected", f"deploy failed: {exc}")
            notices.publish(self.settings, "failed", version=version, reason=f"deploy failed: {exc}")
            return outcome("failed", f"deploy failed: {exc}")
        self.registry.promote(version, reason=decision.reason)
        self._flow_labels_follow(train_lines, version)
        if trained_keys:
            self.redis.srem(self.dataset.untrained_key, *trained_keys)
        # After the pointer moved: detectors follow it, then what it replaced stops billing.
        stopped = self.backend.retire(self.registry.describe(version))
        notices.publish(
            self.settings, "deployed", version=version, f1=score, serving_f1=serving_score, stopped=stopped
        )
        return outcome("promoted", decision.reason)

    # --- cold start: the held-back split (hitl.training.split) ---------------------------------------
    def _carve_test_split(self, merged: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """No test manifest yet: hold back a share of the labels and keep it, fixed, as the test split."""
        from hitl.training.split import carve_test_split

        _, test = carve_test_split(merged)
        if test:
            aws.client("s3").put_object(
                Bucket=self.settings.bucket, Key=self.settings.test_manifest_key, Body=write_manifest(test).encode()
            )
            log.info("test_split_carved", held_back=len(test), labelled=len(merged))
        return test

    def _flow_labels_follow(self, train_lines: list[dict[str, Any]], version: str) -> None:
        """Reviewers can answer with every label the promoted version knows (hitl.training.flow_labels)."""
        from hitl.training import flow_labels

        flow_labels.follow(self.settings, flow_labels.labels_of(train_lines), f"promoted {version}")
