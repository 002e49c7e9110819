"""Detect one submitted image: fetch, check, predict, route, record. Idempotent per image id."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from celery import Celery

from hitl import aws, metrics
from hitl.adapters.detection import DetectionBackend, NoModelServing
from hitl.adapters.records import RecordStore
from hitl.adapters.redis_index import ImageIndex
from hitl.domain.images import ImageRejected, check_size, content_id, decode
from hitl.domain.records import (
    NO_MODEL_VERSION,
    DetectedLabel,
    DetectionRecord,
    Prediction,
    RouteDecision,
    Timings,
    detection_id_for,
)
from hitl.domain.routing import RoutingPolicy, route
from hitl.domain.strategies import image_descriptor
from hitl.logs import get_logger
from hitl.loops.status import LoopStatusWriter
from hitl.params import ParameterStore
from hitl.settings import Settings

log = get_logger("hitl.detect")

DISPATCH_TASK = "hitl.dispatch.start_loop"


class Unread:
    """The image's state has not been read yet."""


UNREAD = Unread()


@dataclass
class DetectRequest:
    image_id: str
    uri: str
    source: str = "api"
    enqueued_at: float | None = None
    annotate: bool = False
    # No version can serve (none promoted yet, or the backend stayed not ready): a human labels it.
    cold_start: bool = False


class Detector:
    def __init__(
        self,
        settings: Settings,
        backend: DetectionBackend,
        params: ParameterStore,
        celery: Celery,
        index: ImageIndex | None = None,
        records: RecordStore | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.params = params
        self.celery = celery
        self.index = index or ImageIndex(settings)
        self.records = records or RecordStore(settings)
        self.limits = settings.image_limits()
        self.loop_status = LoopStatusWriter(settings, index=self.index, records=self.records)
        self._serving: str | None = None

    def _note_serving(self, version: str) -> None:
        if version != self._serving:
            if self._serving is not None:
                metrics.SERVING_VERSION.labels(self._serving).set(0)
            metrics.SERVING_VERSION.labels(version).set(1)
            self._serving = version

    def run(self, request: DetectRequest, state: str | Unread | None = UNREAD) -> DetectionRecord | None:
        """``state``: the index entry's state when the caller has read it already (in the round trip
        that counted the delivery)."""
        bound = log.bind(image_id=request.image_id, uri=request.uri)
        if isinstance(state, Unread):
            state = self.index.get(request.image_id).get("state")
        if state in ("detected", "rejected"):
            # A redelivered message: the work is done and recorded; doing it again would double count.
            bound.info("detect_skipped_done", state=state)
            return None
        try:
            return self._detect(request, bound)
        except ImageRejected as rejection:
            self.index.reject(request.image_id, request.uri, rejection.reason, rejection.detail, request.source)
            metrics.IMAGES_REJECTED.labels(rejection.reason).inc()
            bound.warning("image_rejected", reason=rejection.reason, detail=rejection.detail)
            return None

    def _fetch(self, uri: str) -> bytes:
        bucket, key = aws.parse_s3_uri(uri)
        if bucket != self.settings.bucket:
            raise ImageRejected("wrong_bucket", f"{bucket} is not the configured bucket {self.settings.bucket}")
        s3 = aws.client("s3")
        try:
            response = s3.get_object(Bucket=bucket, Key=key)
        except s3.exceptions.NoSuchKey as exc:
            raise ImageRejected("not_found", f"{uri} does not exist") from exc
        body = response["Body"]
        try:
            # The size is known from the headers: a huge object is refused before its body is read.
            check_size(int(response["ContentLength"]), self.limits)
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def _predict(self, image: Any, data: bytes, request: DetectRequest) -> tuple[str, list[Prediction]]:
        if request.cold_start:
            return NO_MODEL_VERSION, []
        try:
            return self.backend.detect(image, data, request.uri)
        except NoModelServing:
            return NO_MODEL_VERSION, []

    def _detect(self, request: DetectRequest, bound: Any) -> DetectionRecord:
        started = time.perf_counter()
        data = self._fetch(request.uri)
        fetched = time.perf_counter()
        if content_id(data) != request.image_id:
            raise ImageRejected("content_changed", "the object's bytes no longer match the submitted image id")
        image = decode(data, self.limits)
        decoded = time.perf_counter()
        version, predictions = self._predict(image, data, request)
        inferred = time.perf_counter()
        if version != NO_MODEL_VERSION:
            metrics.INFERENCE_SECONDS.labels(self.backend.name).observe(inferred - decoded)
            self._note_serving(version)

        snapshot = self.params.snapshot()
        policy = RoutingPolicy(
            review_enabled=snapshot.review_enabled,
            min_confidence=snapshot.min_confidence,
            label_overrides=snapshot.label_overrides,
            sampling_enabled=snapshot.sampling_enabled,
            sampling_interval=snapshot.sampling_interval,
            strategy=snapshot.routing_strategy,
        )
        sample_seq = (
            self.index.sample_sequence(snapshot.sampling_epoch, request.image_id)
            if policy.review_enabled and policy.sampling_enabled and not request.annotate
            else None
        )
        descriptor, recent = None, None
        if policy.strategy == "diverse-uncertainty" and version != NO_MODEL_VERSION and not request.annotate:
            # A cheap descriptor of the pixels (any backend has them; only the local one has an
            # embedding), compared with the images recently sent so near-duplicates are not all sent.
            descriptor = image_descriptor(image.pixels)
            recent = self.index.recent_descriptors(exclude=request.image_id)
        decision = (
            route(
                predictions,
                policy,
                sample_seq,
                annotate=request.annotate,
                image_key=request.image_id,
                descriptor=descriptor,
                recent=recent,
            )
            if version != NO_MODEL_VERSION
            # Cold start is a mode: an empty task of the flow's kind, labelled from scratch.
            else RouteDecision(reasons=["cold_start"])
        )
        record = DetectionRecord(
            detection_id=detection_id_for(request.image_id),
            image_id=request.image_id,
            image_uri=request.uri,
            width=image.width,
            height=image.height,
            model_version=version,
            backend=self.backend.name,
            labels=[DetectedLabel.from_prediction(p, image.width, image.height) for p in predictions],
            route=decision,
            timings=Timings(
                fetch_ms=(fetched - started) * 1000,
                decode_ms=(decoded - fetched) * 1000,
                inference_ms=(inferred - decoded) * 1000,
                total_ms=(time.perf_counter() - started) * 1000,
                queue_wait_ms=(time.time() - request.enqueued_at) * 1000 if request.enqueued_at else None,
            ),
            source=request.source,
        )
        record_uri = self.records.put(record)
        if descriptor is not None and "low_confidence" in decision.reasons:
            self.index.remember_descriptor(request.image_id, descriptor)
        if decision.review:
            # Sent before the index says "detected": a crash in between redelivers and re-sends, and the
            # dispatcher is idempotent; the other order could lose the review. Marked pending first:
            # reconciliation dispatches a pending detection whose loop never started.
            self.loop_status.pending(request.image_id)
            self.celery.send_task(
                DISPATCH_TASK,
                kwargs={"image_id": request.image_id, "detection_id": record.detection_id, "enqueued_at": time.time()},
                queue="dispatch",
            )
        route_name = "+".join(decision.reasons) if decision.reasons else "none"
        # The record in S3 is the durable copy from here on: the index entry is kept for the retention period.
        self.index.update(
            request.image_id,
            expire_days=self.settings.retention_days,
            state="detected",
            detection_id=record.detection_id,
            model_version=version,
            route=route_name,
            top_confidence="" if record.top_confidence is None else f"{record.top_confidence:.2f}",
            record_uri=record_uri,
        )
        metrics.DETECTIONS.labels(version, self.backend.name).inc()
        metrics.DETECTION_CONFIDENCE.labels(version).observe(record.top_confidence or 0.0)
        for label in record.labels:
            metrics.DETECTED_LABELS.labels(label.label, version).inc()
        metrics.ROUTE_DECISIONS.labels(route_name).inc()
        bound.info(
            "image_detected",
            detection_id=record.detection_id,
            model_version=version,
            route=route_name,
            labels=len(record.labels),
            top_confidence=record.top_confidence,
            total_ms=round(record.timings.total_ms, 1),
        )
        return record
