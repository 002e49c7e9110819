"""The AWS-only detection backends, checked with botocore's Stubber against the real service models.

Stubber validates every request against the botocore model of Rekognition and SageMaker Runtime;
it is the in-process stand-in for services that have no local equivalent.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from hitl import aws
from hitl.adapters.detection import RekognitionBackend, SageMakerBackend
from hitl.domain.images import DecodedImage
from hitl.settings import Settings

VERSION_ARN = "arn:aws:rekognition:us-east-1:111122223333:project/faces/version/faces.2026-11-01/1730000000000"
IMAGE = DecodedImage(pixels=np.zeros((400, 200, 3), dtype=np.uint8), width=200, height=400, format="png")


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    clients = {
        name: boto3.client(name, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        for name in ("rekognition", "sagemaker-runtime")
    }
    monkeypatch.setattr(aws, "client", lambda name: clients[name])
    monkeypatch.setattr("tenacity.nap.time.sleep", lambda _: None)
    return clients


def test_rekognition_sends_bytes_with_min_confidence_zero_and_converts_boxes(stubbed: dict[str, Any]) -> None:
    backend = RekognitionBackend(Settings(rekognition_project_version_arn=VERSION_ARN))
    with Stubber(stubbed["rekognition"]) as stub:
        stub.add_response(
            "detect_custom_labels",
            {
                "CustomLabels": [
                    {
                        "Name": "face",
                        "Confidence": 55.5,
                        "Geometry": {"BoundingBox": {"Width": 0.5, "Height": 0.25, "Left": 0.1, "Top": 0.2}},
                    },
                    {
                        "Name": "face",
                        "Confidence": 91.0,
                        "Geometry": {"BoundingBox": {"Width": 0.1, "Height": 0.1, "Left": 0.0, "Top": 0.0}},
                    },
                ]
            },
            {"ProjectVersionArn": VERSION_ARN, "Image": {"Bytes": b"png-bytes"}, "MinConfidence": 0},
        )
        version, predictions = backend.detect(IMAGE, b"png-bytes", "s3://b/k.png")
        stub.assert_no_pending_responses()
    assert version == "faces.2026-11-01"
    assert [p.confidence for p in predictions] == [91.0, 55.5]
    box = predictions[1].box
    assert box is not None
    assert (box.left, box.top, box.width, box.height) == pytest.approx((20, 80, 100, 100))


def test_rekognition_image_level_labels_have_no_box(stubbed: dict[str, Any]) -> None:
    backend = RekognitionBackend(Settings(rekognition_project_version_arn=VERSION_ARN))
    with Stubber(stubbed["rekognition"]) as stub:
        stub.add_response("detect_custom_labels", {"CustomLabels": [{"Name": "aws_logo", "Confidence": 77.7}]})
        _, predictions = backend.detect(IMAGE, b"x", "s3://b/k.png")
    assert predictions[0].box is None
    assert predictions[0].label == "aws_logo"


def test_rekognition_large_images_go_by_s3_reference(stubbed: dict[str, Any]) -> None:
    backend = RekognitionBackend(Settings(rekognition_project_version_arn=VERSION_ARN))
    big = b"x" * (4 * 1024 * 1024 + 1)
    with Stubber(stubbed["rekognition"]) as stub:
        stub.add_response(
            "detect_custom_labels",
            {"CustomLabels": []},
            {
                "ProjectVersionArn": VERSION_ARN,
                "Image": {"S3Object": {"Bucket": "bkt", "Name": "dir/k.png"}},
                "MinConfidence": 0,
            },
        )
        assert backend.detect(IMAGE, big, "s3://bkt/dir/k.png")[1] == []


@pytest.mark.parametrize(
    "code", ["ResourceNotReadyException", "ThrottlingException", "ProvisionedThroughputExceededException"]
)
def test_rekognition_retries_transient_errors(stubbed: dict[str, Any], code: str) -> None:
    backend = RekognitionBackend(Settings(rekognition_project_version_arn=VERSION_ARN))
    with Stubber(stubbed["rekognition"]) as stub:
        stub.add_client_error("detect_custom_labels", service_error_code=code, http_status_code=400)
        stub.add_client_error("detect_custom_labels", service_error_code=code, http_status_code=400)
        stub.add_response("detect_custom_labels", {"CustomLabels": [{"Name": "face", "Confidence": 80.0}]})
        _, predictions = backend.detect(IMAGE, b"x", "s3://b/k.png")
        stub.assert_no_pending_responses()
    assert predictions[0].confidence == 80.0


def test_rekognition_gives_up_after_bounded_retries(stubbed: dict[str, Any]) -> None:
    backend = RekognitionBackend(Settings(rekognition_project_version_arn=VERSION_ARN))
    with Stubber(stubbed["rekognition"]) as stub:
        for _ in range(6):
            stub.add_client_error("detect_custom_labels", service_error_code="ResourceNotReadyException")
        with pytest.raises(stubbed["rekognition"].exceptions.ResourceNotReadyException):
            backend.detect(IMAGE, b"x", "s3://b/k.png")
        stub.assert_no_pending_responses()


def test_rekognition_does_not_retry_bad_requests(stubbed: dict[str, Any]) -> None:
    backend = RekognitionBackend(Settings(rekognition_project_version_arn=VERSION_ARN))
    with Stubber(stubbed["rekognition"]) as stub:
        stub.add_client_error("detect_custom_labels", service_error_code="InvalidImageFormatException")
        with pytest.raises(stubbed["rekognition"].exceptions.InvalidImageFormatException):
            backend.detect(IMAGE, b"x", "s3://b/k.png")
        stub.assert_no_pending_responses()


def test_rekognition_requires_a_version_arn() -> None:
    with pytest.raises(ValueError, match="PROJECT_VERSION_ARN"):
        RekognitionBackend(Settings(rekognition_project_version_arn=""))


def test_sagemaker_parses_the_ssd_prediction_format(stubbed: dict[str, Any]) -> None:
    backend = SageMakerBackend(Settings(sagemaker_endpoint_name="od-endpoint", sagemaker_class_map={"0": "pizza"}))
    payload = json.dumps(
        {"prediction": [[0, 0.9, 0.1, 0.2, 0.6, 0.7], [1, 0.4, 0.0, 0.0, 0.5, 0.5], [0, 0.001, 0, 0, 1, 1]]}
    )
    body = StreamingBody(io.BytesIO(payload.encode()), len(payload))
    with Stubber(stubbed["sagemaker-runtime"]) as stub:
        stub.add_response(
            "invoke_endpoint",
            {"Body": body, "ContentType": "application/json"},
            {"EndpointName": "od-endpoint", "ContentType": "image/jpeg", "Accept": "application/json", "Body": ANY},
        )
        _, predictions = backend.detect(IMAGE, b"png-bytes", "s3://b/k.png")
        stub.assert_no_pending_responses()
    assert [(p.label, p.confidence) for p in predictions] == [("pizza", 90.0), ("1", 40.0)]
    box = predictions[0].box
    assert box is not None
    assert (box.left, box.top, box.width, box.height) == pytest.approx((20, 80, 100, 200))


@pytest.mark.parametrize(
    ("model_threads", "concurrency", "cpus", "expected"),
    [
        (0, 0, 2, 1),  # one process per core: one thread each
        (0, 1, 2, 2),  # one process: every core
        (0, 2, 8, 4),
        (0, 4, 2, 1),  # more processes than cores: never zero
        (3, 2, 2, 3),  # HITL_MODEL_THREADS wins
    ],
)
def test_model_threads_share_the_cores_among_worker_processes(
    model_threads: int, concurrency: int, cpus: int, expected: int
) -> None:
    from hitl.adapters.detection import model_threads as threads_for

    settings = Settings(model_threads=model_threads, worker_concurrency=concurrency)
    assert threads_for(settings, cpus=cpus) == expected


def test_the_thread_share_limits_numpys_blas_threads_too() -> None:
    """Numpy's BLAS starts a thread per core of the machine in every process (the heads' inference
    uses it); the share must bound it too, or each worker process's idle BLAS threads spin."""
    script = (
        "import json\n"
        "from threadpoolctl import threadpool_info\n"
        "from hitl.model.backbone import set_shared_threads\n"
        "def blas(): return [p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas']\n"
        "before = blas()\n"
        "set_shared_threads(1)\n"
        "print(json.dumps([before, blas()]))\n"
    )
    # Two BLAS threads to begin with, whatever this machine's core count.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
    before, after = json.loads(done.stdout)
    assert before
    assert set(before) == {2}
    assert after == [1] * len(before)
