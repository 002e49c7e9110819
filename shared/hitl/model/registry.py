"""The model registry in S3, and the detector's hot-swapping cache of the serving version.

Layout under ``settings.models_prefix`` (default ``models/``)::

    v0001/artifact.npz     the trained model (ModelArtifact bytes)
    v0001/train.manifest   snapshot of the training manifest it was trained on
    v0001/test.manifest    snapshot of the test manifest it was evaluated on (if any)
    v0001/meta.json        version, parent, snapshots, metrics, status, times
    serving.json           the pointer: {"version": …, "history": [older serving versions…]}

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
        return None if self.metrics is None else float(self.metrics["f1"])

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


@dataclass(frozen=True)
class ServingPointer:
    version: str
    updated_at: str
    history: list[str] = field(default_factory=list)  # previously serving versions, newest last


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
        if parent is None:
            pointer = self.pointer()
            parent = pointer.version if pointer else None
        blob = artifact.to_bytes()
        for _ in range(attempts):
            existing = self.versions()
            version = version_id(int(existing[-1][1:]) + 1 if existing else 1)
            meta = ModelVersion(
                version=version,
                kind=artifact.kind,
                labels=list(artifact.labels),
                status="candidate",
                created_at=_now(),
                artifact_uri=self._settings.s3_uri(self._key(version, "artifact.npz")),
                artifact_sha256=hashlib.sha256(blob).hexdigest(),
                train_manifest_uri=self._settings.s3_uri(self._key(version, "train.manifest")),
                test_manifest_uri=self._settings.s3_uri(self._key(version, "test.manifest")) if test_manifest else None,
                parent=parent,
                metrics=artifact.evaluation,
                thresholds=dict(artifact.thresholds),
                calibration=artifact.calibration.to_dict(),
                info=dict(artifact.info),
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
            self._put(self._key(version, "artifact.npz"), blob, "application/octet-stream")
            log.info("model.published", version=version, parent=parent, kind=artifact.kind)
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

    def promote(self, version: str, reason: str = "") -> ServingPointer:
        """Make ``version`` the serving one; the previous one is retired and kept for rollback."""
        self.describe(version)  # must exist
        current, etag = self._pointer()
        if current and current.version == version:
            return current
        history = ([*current.history, current.version] if current else [])[-HISTORY_LIMIT:]
        new = ServingPointer(version=version, updated_at=_now(), history=history)
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
        new = ServingPointer(version=current.history[-1], updated_at=_now(), history=current.history[:-1])
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
