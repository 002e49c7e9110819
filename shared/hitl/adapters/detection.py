"""Detection backends behind one interface, chosen by ``HITL_DETECT_BACKEND``.

- ``local``: the embedded trainable model, serving version from the S3 registry;
- ``rekognition``: Rekognition Custom Labels ``DetectCustomLabels``;
- ``sagemaker``: a SageMaker built-in object-detection endpoint (``InvokeEndpoint``);
- ``fixed``: a constant-time stand-in that measures the pipeline's own cost in benchmarks.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Any, Protocol

from botocore.exceptions import ClientError
from PIL import Image
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from hitl import aws
from hitl.cpus import available_cpus, worker_processes
from hitl.domain.images import DecodedImage
from hitl.domain.records import PixelBox, Prediction, RatioBox
from hitl.settings import Settings

REKOGNITION_MAX_BYTES = 4 * 1024 * 1024
# Rekognition errors that mean "try again later" rather than "this request is wrong".
RETRYABLE_REKOGNITION = {
    "ResourceNotReadyException",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "InternalServerError",
}


class ModelNotReady(RuntimeError):
    """No model version can serve yet (none trained, or the endpoint is starting): retry later."""


class NoModelServing(ModelNotReady):
    """No version has ever been promoted: the pipeline is in cold start (humans label from scratch)."""


class DetectionBackend(Protocol):
    name: str

    def detect(self, image: DecodedImage, data: bytes, uri: str) -> tuple[str, list[Prediction]]:
        """Returns (model version, predictions sorted by confidence, highest first)."""
        ...


def _sorted(predictions: list[Prediction]) -> list[Prediction]:
    return sorted(predictions, key=lambda p: p.confidence, reverse=True)


class FixedBackend:
    """A constant-time model: one label whose confidence is a function of the bytes, after a fixed
    delay (``HITL_FIXED_BACKEND_LATENCY_MS``). It measures the pipeline's own cost in benchmarks."""

    name = "fixed"

    def __init__(self, latency_ms: float = 0.0) -> None:
        self.latency_s = latency_ms / 1000.0

    def detect(self, image: DecodedImage, data: bytes, uri: str) -> tuple[str, list[Prediction]]:
        if self.latency_s:
            time.sleep(self.latency_s)
        digest = hashlib.blake2b(data, digest_size=2).digest()
        confidence = float(int.from_bytes(digest, "big") % 1000) / 10.0
        box = PixelBox(left=image.width / 4, top=image.height / 4, width=image.width / 2, height=image.height / 2)
        return "fixed", [Prediction(label="object", confidence=confidence, box=box)]


def model_threads(settings: Settings, cpus: int | None = None) -> int:
    """Threads per worker process for the embedded model: ``HITL_MODEL_THREADS``, else the cores
    shared among the worker's processes (at least one each)."""
    if settings.model_threads > 0:
        return settings.model_threads
    cores = cpus or available_cpus()
    processes = worker_processes(settings.worker_concurrency, cores)
    return max(1, cores // processes)


class LocalBackend:
    name = "local"

    def __init__(self, settings: Settings) -> None:
        from hitl.model.backbone import set_shared_threads
        from hitl.model.registry import ModelRegistry, ServingModelCache

        set_shared_threads(model_threads(settings))
        self.cache = ServingModelCache(ModelRegistry(settings), refresh_seconds=settings.model_cache_seconds)

    def detect(self, image: DecodedImage, data: bytes, uri: str) -> tuple[str, list[Prediction]]:
        from hitl.model.registry import NoServingModel

        try:
            predictor = self.cache.get()
        except NoServingModel as exc:
            raise NoModelServing(str(exc)) from exc
        # Each label's assumed threshold applies (Rekognition's default): the record holds what the
        # model claims, which is also what reviewers see prefilled; routing then judges its confidence.
        return predictor.version, _sorted(predictor.predict(image.pixels))


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and exc.response["Error"]["Code"] in RETRYABLE_REKOGNITION


def _pointer_cache(settings: Settings) -> Any:
    from hitl.model.registry import ModelRegistry, ServingPointerCache

    return ServingPointerCache(ModelRegistry(settings), refresh_seconds=settings.model_cache_seconds)


def version_name_of(arn: str) -> str:
    """``…:project/p/1/version/v0002/17…`` → ``v0002`` (the ARN itself if it is not a version ARN)."""
    return arn.rsplit("/", 2)[-2] if "/version/" in arn else arn


class RekognitionBackend:
    """The serving project version is the one the registry's pointer names (a retrained version is
    followed without a restart); before any promotion, ``HITL_REKOGNITION_PROJECT_VERSION_ARN``."""

    name = "rekognition"

    def __init__(self, settings: Settings) -> None:
        if not (settings.rekognition_project_version_arn or settings.rekognition_project_arn):
            raise ValueError(
                "HITL_REKOGNITION_PROJECT_VERSION_ARN or HITL_REKOGNITION_PROJECT_ARN is required "
                "for the rekognition backend"
            )
        self.settings = settings
        self.pointer = _pointer_cache(settings)

    def serving(self) -> tuple[str, str]:
        """(version label, project version ARN) serving now."""
        pointer = self.pointer.get()
        if pointer is not None and pointer.backend == "rekognition" and pointer.target:
            return pointer.version, pointer.target
        arn = self.settings.rekognition_project_version_arn
        if not arn:
            raise ModelNotReady("no Rekognition project version is serving yet")
        return version_name_of(arn), arn

    @retry(
        retry=retry_if_exception(_retryable),
        wait=wait_exponential_jitter(multiplier=0.5, max=20),
        stop=stop_after_attempt(6),
        reraise=True,
    )
    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = aws.client("rekognition").detect_custom_labels(**request)
        return response

    def detect(self, image: DecodedImage, data: bytes, uri: str) -> tuple[str, list[Prediction]]:
        version, arn = self.serving()
        if len(data) <= REKOGNITION_MAX_BYTES:
            source: dict[str, Any] = {"Bytes": data}
        else:
            bucket, key = aws.parse_s3_uri(uri)
            source = {"S3Object": {"Bucket": bucket, "Name": key}}
        # MinConfidence 0: routing, not Rekognition's assumed threshold, decides what is "low".
        response = self._call({"ProjectVersionArn": arn, "Image": source, "MinConfidence": 0})
        predictions = []
        for item in response.get("CustomLabels", []):
            box = None
            geometry = item.get("Geometry", {}).get("BoundingBox")
            if geometry:
                ratio = RatioBox(
                    left=geometry["Left"], top=geometry["Top"], width=geometry["Width"], height=geometry["Height"]
                )
                box = ratio.pixels(image.width, image.height)
            predictions.append(Prediction(label=item["Name"], confidence=float(item["Confidence"]), box=box))
        return version, _sorted(predictions)


class SageMakerBackend:
    """Built-in object detection: ``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}``."""

    name = "sagemaker"
    MIN_SCORE = 0.01
    MAX_RESULTS = 50

    def __init__(self, settings: Settings) -> None:
        if not settings.sagemaker_endpoint_name:
            raise ValueError("HITL_SAGEMAKER_ENDPOINT_NAME is required for the sagemaker backend")
        self.settings = settings
        self.pointer = _pointer_cache(settings)

    def detect(self, image: DecodedImage, data: bytes, uri: str) -> tuple[str, list[Prediction]]:
        body = data
        if image.format != "jpg":
            buffer = io.BytesIO()
            Image.fromarray(image.pixels).save(buffer, format="JPEG", quality=95)
            body = buffer.getvalue()
        # UpdateEndpoint keeps the endpoint's name; the pointer names the registry version it serves.
        pointer = self.pointer.get()
        served = pointer if pointer is not None and pointer.backend == "sagemaker" and pointer.target else None
        endpoint = served.target if served else self.settings.sagemaker_endpoint_name
        response = aws.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=endpoint,
            ContentType="image/jpeg",
            Accept="application/json",
            Body=body,
        )
        payload = json.loads(response["Body"].read())
        class_map = self.settings.sagemaker_class_map
        predictions = []
        for class_id, score, xmin, ymin, xmax, ymax in payload.get("prediction", []):
            if score < self.MIN_SCORE:
                continue
            label = class_map.get(str(int(class_id)), str(int(class_id)))
            box = RatioBox(left=xmin, top=ymin, width=xmax - xmin, height=ymax - ymin).pixels(image.width, image.height)
            predictions.append(Prediction(label=label, confidence=min(100.0, float(score) * 100.0), box=box))
        version = served.version if served else (
            response.get("ResponseMetadata", {})
            .get("HTTPHeaders", {})
            .get("x-amzn-invoked-production-variant", endpoint)
        )
        return str(version), _sorted(predictions)[: self.MAX_RESULTS]


def create_backend(settings: Settings) -> DetectionBackend:
    backends: dict[str, type] = {
        "local": LocalBackend,
        "rekognition": RekognitionBackend,
        "sagemaker": SageMakerBackend,
    }
    if settings.detect_backend == "fixed":
        return FixedBackend(settings.fixed_backend_latency_ms)
    return backends[settings.detect_backend](settings)  # type: ignore[no-any-return]
