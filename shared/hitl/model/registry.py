"""The model registry in S3, and the detector's hot-swapping cache of the serving version.

Layout under ``settings.models_prefix`` (default ``models/``)::

    v0001/artifact.npz     the trained model (ModelArtifact bytes)
    v0001/train.manifest   snapshot of the training manifest it was trained on
    v0001/test.manifest    snapshot of the test manifest it was evaluated on (if any)
    v0001/meta.json        version, parent, snapshots, metrics, status, times
    serving.json           the pointer: {"version": …, "target": …, "history": [older serving versions…]}

A version trained by a managed service (Rekognition Custom Labels, SageMaker) has no artifact here:
its ``artifact_uri`` is what serves it (a project version ARN or an endpoint name) and the pointer's
``target`` names it, so a detector follows a promotion by re-reading the pointer, without a restart.

Promotion and rollback overwrite ``serving.json`` only: one PUT, atomic for readers. Writers use
S3 conditional requests (If-None-Match on a new version, If-Match on the pointer) so two trainers
cannot take the same version id or lose each other's promotion.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from hitl import aws
from hitl.logs import get_logger
from hitl.model.artifact import ModelArtifact
from hitl.model.predictor import LocalPredictor
from hitl.settings import Settings, get_settings

log = get_logger(__name__)

Status = Literal["candidate", "serving", "rejected", "retired"]
VERSION_RE = re.compile(r"^v(\d{4,})$")
POINTER = "serving.json"
HISTORY_LIMIT = 20


class RegistryError(RuntimeError):
    pass


class NoServingModel(RegistryError):
    """No version has been promoted yet (or the pointer names a missing version)."""


class ConcurrentUpdate(RegistryError):
    """Another writer changed the pointer or took the version id first; retry."""


def version_id(number: int) -> str:
    return f"v{number:04d}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelVersion:
    version: str
    kind: str
    labels: list[str]
    status: Status
    created_at: str
    artifact_uri: str
    artifact_sha256: str
    train_manifest_uri: str | None
    test_manifest_uri: str | None = None
    parent: str | None = None
    metrics: dict[str, Any] | None = None  # the evaluation report on the test set
    thresholds: dict[str, float] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # the artifact's confidence map (None: identity, older versions)
    info: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, str]] = field(default_factory=list)  # status changes: {status, at, reason}

    @property
    def f1(self) -> float | None:
        value = None if self.metrics is None else self.metrics.get("f1")
        return None if value is None else float(value)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


@dataclass(frozen=True)
class ServingPointer:
    version: str
    updated_at: str
    history: list[str] = field(default_factory=list)  # previously serving versions, newest last
    # What serves it outside this registry: a Rekognition project version ARN or a SageMaker
    # endpoint name; empty for the embedded model (its artifact is in the registry).
    target: str = ""
    backend: str = "embedded"


class ModelRegistry:
    def __init__(self, settings: Settings | None = None, client: Any | None = None) -> None:
        self._settings = settings or get_settings()
        self._client = client
        self.bucket = self._settings.bucket
        self.prefix = self._settings.models_prefix

    @property
    def s3(self) -> Any:
        return self._client or aws.client("s3")

    def _key(self, *parts: str) -> str:
        return self.prefix + "/".join(parts)

    def _get(self, key: str) -> tuple[bytes, str] | None:
        try:
            found = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return found["Body"].read(), found["ETag"]

    def _put(self, key: str, body: bytes, content_type: str, **conditions: str) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **conditions)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise ConcurrentUpdate(f"s3://{self.bucket}/{key} changed concurrently") from exc
            raise

    # --- versions -----------------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Every version id, oldest first."""
        found: set[str] = set()
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix) :].rstrip("/")
                if VERSION_RE.match(name):
                    found.add(name)
        return sorted(found, key=lambda v: int(v[1:]))

    def describe(self, version: str) -> ModelVersion:
        got = self._get(self._key(version, "meta.json"))
        if got is None:
            raise RegistryError(f"no model version {version!r}")
        return ModelVersion(**json.loads(got[0]))

    def publish(
        self,
        artifact: ModelArtifact,
        train_manifest: str,
        *,
        test_manifest: str | None = None,
        parent: str | None = None,
        attempts: int = 5,
    ) -> ModelVersion:
        """Store a trained artifact as the next version (status ``candidate``) with snapshots of the
        manifests (JSON Lines text) it was trained and evaluated on. ``parent`` defaults to the
        version serving now."""
        blob = artifact.to_bytes()
        meta = self._claim(
            kind=artifact.kind,
            labels=list(artifact.labels),
            train_manifest=train_manifest,
            test_manifest=test_manifest,
            parent=parent,
            attempts=attempts,
            artifact_sha256=hashlib.sha256(blob).hexdigest(),
            metrics=artifact.evaluation,
            thresholds=dict(artifact.thresholds),
            calibration=artifact.calibration.to_dict(),
            info=dict(artifact.info),
        )
        self._put(self._key(meta.version, "artifact.npz"), blob, "application/octet-stream")
        log.info("model.published", version=meta.version, parent=meta.parent, kind=artifact.kind)
        return meta

    def reserve(
        self,
        kind: str,
        labels: list[str],
        train_manifest: str,
        *,
        test_manifest: str | None = None,
        backend: str,
        parent: str | None = None,
        attempts: int = 5,
    ) -> ModelVersion:
        """Claim the next version id for a model a managed service will train from the manifest
        snapshots stored here (``train_manifest_uri``/``test_manifest_uri``); its artifact is
        recorded later by :meth:`record_training`."""
        meta = self._claim(
            kind=kind,
            labels=labels,
            train_manifest=train_manifest,
            test_manifest=test_manifest,
            parent=parent,
            attempts=attempts,
            artifact_sha256="",
            metrics=None,
            thresholds={},
            calibration=None,
            info={"backend": backend},
        )
        log.info("model.reserved", version=meta.version, parent=meta.parent, backend=backend)
        return meta

    def record_training(
        self, version: str, *, target: str, metrics: dict[str, Any], info: dict[str, Any] | None = None
    ) -> ModelVersion:
        """A managed service trained ``version``: what serves it (ARN or endpoint) and its scores."""
        meta = self.describe(version)
        merged = {**meta.info, **(info or {}), "target": target}
        updated = replace(meta, artifact_uri=target, metrics=metrics, info=merged)
        self._put(self._key(version, "meta.json"), updated.to_json().encode(), "application/json")
        return updated

    def manifest_key(self, version: str, name: str) -> str:
        """The S3 key of a version's manifest snapshot (``train.manifest`` or ``test.manifest``)."""
        return self._key(version, name)

    def _claim(
        self,
        *,
        kind: str,
        labels: list[str],
        train_manifest: str,
        test_manifest: str | None,
        parent: str | None,
        attempts: int,
        artifact_sha256: str,
        metrics: dict[str, Any] | None,
        thresholds: dict[str, float],
        calibration: dict[str, Any] | None,
        info: dict[str, Any],
    ) -> ModelVersion:
        if parent is None:
            pointer = self.pointer()
            parent = pointer.version if pointer else None
        for _ in range(attempts):
            existing = self.versions()
            version = version_id(int(existing[-1][1:]) + 1 if existing else 1)
            meta = ModelVersion(
                version=version,
                kind=kind,
                labels=labels,
                status="candidate",
                created_at=_now(),
                artifact_uri=self._settings.s3_uri(self._key(version, "artifact.npz")) if artifact_sha256 else "",
                artifact_sha256=artifact_sha256,
                train_manifest_uri=self._settings.s3_uri(self._key(version, "train.manifest")),
                test_manifest_uri=self._settings.s3_uri(self._key(version, "test.manifest")) if test_manifest else None,
                parent=parent,
                metrics=metrics,
                thresholds=thresholds,
                calibration=calibration,
                info=info,
                history=[{"status": "candidate", "at": _now(), "reason": "published"}],
            )
            try:
                # The meta object claims the id: a concurrent publisher gets 412 and takes the next.
                self._put(self._key(version, "meta.json"), meta.to_json().encode(), "application/json", IfNoneMatch="*")
            except ConcurrentUpdate:
                continue
            self._put(self._key(version, "train.manifest"), train_manifest.encode(), "application/x-ndjson")
            if test_manifest:
                self._put(self._key(version, "test.manifest"), test_manifest.encode(), "application/x-ndjson")
            return meta
        raise ConcurrentUpdate("could not allocate a version id")

    def set_status(self, version: str, status: Status, reason: str = "") -> ModelVersion:
        meta = self.describe(version)
        updated = replace(
            meta, status=status, history=[*meta.history, {"status": status, "at": _now(), "reason": reason}]
        )
        self._put(self._key(version, "meta.json"), updated.to_json().encode(), "application/json")
        return updated

    def artifact(self, version: str) -> ModelArtifact:
        got = self._get(self._key(version, "artifact.npz"))
        if got is None:
            raise RegistryError(f"model version {version!r} has no artifact")
        meta = self.describe(version)
        if hashlib.sha256(got[0]).hexdigest() != meta.artifact_sha256:
            raise RegistryError(f"model version {version!r}: artifact checksum mismatch")
        return ModelArtifact.from_bytes(got[0])

    def load(self, version: str) -> LocalPredictor:
        return LocalPredictor(self.artifact(version), version)

    # --- serving pointer ----------------------------------------------------------------------
    def _pointer(self) -> tuple[ServingPointer | None, str | None]:
        got = self._get(self._key(POINTER))
        if got is None:
            return None, None
        return ServingPointer(**json.loads(got[0])), got[1]

    def pointer(self) -> ServingPointer | None:
        return self._pointer()[0]

    def serving_version(self) -> str | None:
        pointer = self.pointer()
        return pointer.version if pointer else None

    def _swap(self, new: ServingPointer, etag: str | None) -> None:
        body = json.dumps(asdict(new)).encode()
        conditions = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        self._put(self._key(POINTER), body, "application/json", **conditions)

    def _target(self, version: str) -> dict[str, str]:
        info = self.describe(version).info
        return {"target": str(info.get("target", "")), "backend": str(info.get("backend", "embedded"))}

    def promote(self, version: str, reason: str = "") -> ServingPointer:
        """Make ``version`` the serving one; the previous one is retired and kept for rollback."""
        current, etag = self._pointer()
        if current and current.version == version:
            return current
        history = ([*current.history, current.version] if current else [])[-HISTORY_LIMIT:]
        new = ServingPointer(version=version, updated_at=_now(), history=history, **self._target(version))
        self._swap(new, etag)
        self.set_status(version, "serving", reason or "promoted")
        if current:
            self.set_status(current.version, "retired", f"replaced by {version}")
        log.info("model.promoted", version=version, previous=current.version if current else None)
        return new

    def rollback(self, reason: str = "rollback") -> ServingPointer:
        """Serve the previously serving version again; the current one is marked rejected."""
        current, etag = self._pointer()
        if current is None or not current.history:
            raise RegistryError("nothing to roll back to")
        previous = current.history[-1]
        new = ServingPointer(
            version=previous, updated_at=_now(), history=current.history[:-1], **self._target(previous)
        )
        self._swap(new, etag)
        self.set_status(new.version, "serving", reason)
        self.set_status(current.version, "rejected", reason)
        log.info("model.rolled_back", version=new.version, rejected=current.version)
        return new


class ServingModelCache:
    """The detector's view of the serving model: ``get()`` re-reads the pointer at most every
    ``refresh_seconds`` and swaps to a newly promoted version without a restart.

    Only one thread refreshes at a time; the others keep getting the loaded model meanwhile, so a
    slow load never stalls detection. If the registry cannot be read, the loaded model keeps serving.
    """

    def __init__(
        self,
        registry: ModelRegistry | None = None,
        refresh_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        loader: Callable[[str], LocalPredictor] | None = None,
    ) -> None:
        self._registry = registry or ModelRegistry()
        self._ttl = get_settings().model_cache_seconds if refresh_seconds is None else refresh_seconds
        self._clock = clock
        self._load = loader or self._registry.load
        self._lock = threading.Lock()
        self._current: LocalPredictor | None = None
        self._checked_at = float("-inf")

    @property
    def version(self) -> str | None:
        return self._current.version if self._current else None

    def get(self) -> LocalPredictor:
        current = self._current
        if current is not None and self._clock() - self._checked_at < self._ttl:
            return current
        if current is None:
            with self._lock:  # first load: everyone waits for it
                if self._current is None:
                    self._refresh()
                if self._current is None:
                    raise NoServingModel("no model version is serving")
                return self._current
        if self._lock.acquire(blocking=False):
            try:
                if self._clock() - self._checked_at >= self._ttl:
                    self._refresh()
            finally:
                self._lock.release()
        return self._current or current

    def _refresh(self) -> None:
        try:
            version = self._registry.serving_version()
            if version is not None and (self._current is None or self._current.version != version):
                loaded = self._load(version)
                previous = self._current.version if self._current else None
                self._current = loaded
                log.info("model.swapped", version=version, previous=previous)
            self._checked_at = self._clock()
        except Exception as exc:
            if self._current is None:
                raise
            # Keep serving what is loaded; try again after the next interval.
            self._checked_at = self._clock()
            log.warning("model.refresh_failed", error=str(exc), serving=self._current.version)


class ServingPointerCache:
    """A managed-service detector's view of the pointer: which project version ARN or endpoint
    serves now. Re-read at most every ``refresh_seconds``; if S3 cannot be read, the last pointer
    read keeps serving (``None`` before any was read: the configured one serves)."""

    def __init__(
        self,
        registry: ModelRegistry,
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._ttl = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._pointer: ServingPointer | None = None
        self._checked_at = float("-inf")

    def get(self) -> ServingPointer | None:
        if self._clock() - self._checked_at < self._ttl:
            return self._pointer
        with self._lock:
            if self._clock() - self._checked_at >= self._ttl:
                try:
                    pointer = self._registry.pointer()
                except Exception as exc:  # noqa: BLE001 - any read failure: keep serving what is known
                    serving = self._pointer.version if self._pointer else None
                    log.warning("model.pointer_refresh_failed", error=repr(exc), serving=serving)
                else:
                    if pointer is not None and (self._pointer is None or pointer.target != self._pointer.target):
                        log.info("model.target_swapped", version=pointer.version, target=pointer.target)
                    self._pointer = pointer
                self._checked_at = self._clock()
        return self._pointer
