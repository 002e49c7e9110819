"""Incremental retraining on SageMaker through the real trainer task (lock, snapshot, gate, registry).

Which part answers which call:
- moto's server (over HTTP): CreateTrainingJob, CreateModel, CreateEndpointConfig, and the test's own
  DescribeTrainingJob/DescribeModel/DescribeEndpointConfig reading back what the trainer created;
  S3, SSM and EventBridge as everywhere else.
- botocore's Stubber (each request checked against SageMaker's service model): DescribeTrainingJob
  for the trainer's polling (moto completes a job at once and reports no ``validation:mAP``),
  UpdateEndpoint (moto does not implement it) and DescribeEndpoint (so the endpoint is seen updating,
  then in service on the new configuration).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import redis as redis_lib
from botocore.stub import ANY, Stubber

from hitl import aws
from hitl.loops.dataset import LabelledDataset
from hitl.model.registry import ModelRegistry
from hitl.params import ParameterStore
from hitl.scenes import generate_scenes, upload_set
from hitl.settings import Settings, get_settings

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/hitl-sagemaker"
IMAGE = "811284229777.dkr.ecr.us-east-1.amazonaws.com/object-detection:1"
ENDPOINT = "hitl-od"
NOW = datetime(2026, 11, 29, tzinfo=UTC)
STUBBED = {"describe_training_job", "update_endpoint", "describe_endpoint"}


class Routed:
    """One SageMaker client to the trainer: the stubbed operations to the Stubber, the rest to moto."""

    def __init__(self, moto: Any, stubbed: Any) -> None:
        self.moto, self.stubbed = moto, stubbed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stubbed if name in STUBBED else self.moto, name)


@pytest.fixture(scope="module")
def env(settings: Settings) -> Iterator[Settings]:
    variables = {
        "HITL_BUCKET": "hitl-sm-retrain",
        "HITL_KEY_PREFIX": "smretrain",
        "HITL_PARAMS_PATH": "/smretrain/",
        "HITL_PARAMS_CACHE_SECONDS": "0",
        "HITL_TRAIN_BACKEND": "sagemaker",
        "HITL_SAGEMAKER_ROLE_ARN": ROLE,
        "HITL_SAGEMAKER_TRAINING_IMAGE": IMAGE,
        "HITL_SAGEMAKER_ENDPOINT_NAME": ENDPOINT,
        "HITL_TRAINING_POLL_INITIAL_SECONDS": "0.01",
        "HITL_TRAINING_POLL_MAX_SECONDS": "0.02",
    }
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    get_settings.cache_clear()
    local = get_settings()
    aws.client("s3").create_bucket(Bucket=local.bucket)
    client = redis_lib.Redis.from_url(local.redis_url)
    for key in client.scan_iter("smretrain:*"):
        client.delete(key)
    params = ParameterStore(local)
    params.ensure_defaults()
    params.set("Minimum-Untrained-Images", "2")
    params.set("Minimum-F1-Score", "0.5")  # applied to validation:mAP on this backend
    params.set("Minimum-Inference-Units", "1")
    upload_set(
        generate_scenes("train", 4, seed=0, source_prefix=f"s3://{local.bucket}/seed/"),
        local.s3_uri(local.seed_manifest_key),
    )
    upload_set(
        generate_scenes("test", 3, seed=0, source_prefix=f"s3://{local.bucket}/test/"),
        local.s3_uri(local.test_manifest_key),
    )
    yield local
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()


@pytest.fixture
def sagemaker(monkeypatch: pytest.MonkeyPatch, env: Settings) -> Iterator[tuple[Stubber, Any]]:
    moto = aws.client("sagemaker")
    stubbed = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    routed = Routed(moto, stubbed)
    real = aws.client
    monkeypatch.setattr(aws, "client", lambda name: routed if name == "sagemaker" else real(name))
    with Stubber(stubbed) as stub:
        yield stub, moto
        stub.assert_no_pending_responses()


def add_labels(settings: Settings, start: int, count: int) -> None:
    files = generate_scenes("train", start + count, seed=3, source_prefix=f"s3://{settings.bucket}/labelled/")[start:]
    upload_set(files, f"s3://{settings.bucket}/scratch/labels-{start}.jsonl")
    dataset = LabelledDataset(settings)
    for index, (_, line) in enumerate(files, start=start):
        assert dataset.add(f"det-{index:032x}", line)


def job_description(status: str, artifact: str, m_ap: float | None = None) -> dict[str, Any]:
    described: dict[str, Any] = {
        "TrainingJobName": "stubbed",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/stubbed",
        "ModelArtifacts": {"S3ModelArtifacts": artifact},
        "TrainingJobStatus": status,
        "SecondaryStatus": "Completed" if status == "Completed" else "Training",
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "Pipe"},
        "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 14400},
        "CreationTime": NOW,
    }
    if m_ap is not None:
        described["FinalMetricDataList"] = [
            {"MetricName": "train:progress", "Value": 100.0, "Timestamp": NOW},
            {"MetricName": "validation:mAP", "Value": m_ap, "Timestamp": NOW},
        ]
    return described


def endpoint(status: str, config: str) -> dict[str, Any]:
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{ENDPOINT}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
    }


def expect_training(stub: Stubber, artifact: str, m_ap: float) -> None:
    stub.add_response("describe_training_job", job_description("InProgress", artifact), {"TrainingJobName": ANY})
    stub.add_response("describe_training_job", job_description("Completed", artifact, m_ap), {"TrainingJobName": ANY})


def run_check() -> dict[str, Any]:
    from services.trainer.tasks import check

    result: dict[str, Any] = check.apply(kwargs={"reason": "test"}).get()
    return result


def jobs(moto: Any) -> list[dict[str, Any]]:
    names = [j["TrainingJobName"] for j in moto.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]]
    return sorted(
        (moto.describe_training_job(TrainingJobName=n) for n in names if "-v000" in n),
        key=lambda j: j["TrainingJobName"],
    )


def test_incremental_training_gates_on_map_and_updates_the_endpoint(
    env: Settings, sagemaker: tuple[Stubber, Any]
) -> None:
    stub, moto = sagemaker
    registry = ModelRegistry(env)
    first_artifact = f"s3://{env.bucket}/sagemaker-output/job1/output/model.tar.gz"

    # v0001: no serving SageMaker model yet, so the pretrained network starts it.
    add_labels(env, 0, 2)
    expect_training(stub, first_artifact, 0.61)
    # The endpoint config's name is made by the trainer: learn it from moto once it exists.
    stub.add_response("describe_endpoint", endpoint("InService", "hitl-od-initial"), {"EndpointName": ENDPOINT})
    stub.add_response(
        "update_endpoint",
        {"EndpointArn": endpoint("", "")["EndpointArn"]},
        {"EndpointName": ENDPOINT, "EndpointConfigName": ANY},
    )
    stub.add_response("describe_endpoint", endpoint("Updating", "hitl-od-initial"), {"EndpointName": ENDPOINT})
    config_v1 = _config_name_after(moto, stub)
    outcome = run_check()
    assert outcome["outcome"] == "promoted", outcome
    assert outcome["f1"] == 0.61
    first_job = jobs(moto)[-1]
    assert first_job["HyperParameters"]["use_pretrained_model"] == "1"
    assert [c["ChannelName"] for c in first_job["InputDataConfig"]] == ["train", "validation"]
    train = first_job["InputDataConfig"][0]
    assert (train["InputMode"], train["RecordWrapperType"]) == ("Pipe", "RecordIO")
    assert train["DataSource"]["S3DataSource"]["S3DataType"] == "AugmentedManifestFile"
    assert train["DataSource"]["S3DataSource"]["S3Uri"] == env.s3_uri("models/v0001/train.manifest")
    assert train["DataSource"]["S3DataSource"]["AttributeNames"] == ["source-ref", "bounding-box"]
    meta = registry.describe("v0001")
    assert meta.info["endpoint_config"] == config_v1[0]
    model = moto.describe_model(ModelName=config_v1[0])
    assert model["PrimaryContainer"]["ModelDataUrl"] == first_artifact
    variant = moto.describe_endpoint_config(EndpointConfigName=config_v1[0])["ProductionVariants"][0]
    assert (variant["VariantName"], variant["InitialInstanceCount"]) == ("v0001", 1)
    pointer = registry.pointer()
    assert pointer is not None
    assert (pointer.version, pointer.target, pointer.backend) == (
        "v0001",
        ENDPOINT,
        "sagemaker",
    )

    # v0002: warm-started from v0001's artifact; a lower mAP is rejected and the endpoint untouched.
    add_labels(env, 2, 2)
    expect_training(stub, f"s3://{env.bucket}/sagemaker-output/job2/output/model.tar.gz", 0.58)
    outcome = run_check()
    assert outcome["outcome"] == "rejected", outcome
    second_job = jobs(moto)[-1]
    assert second_job["HyperParameters"]["use_pretrained_model"] == "0"
    warm = second_job["InputDataConfig"][-1]
    assert (warm["ChannelName"], warm["InputMode"]) == ("model", "File")
    assert warm["DataSource"]["S3DataSource"]["S3Uri"] == first_artifact
    assert registry.serving_version() == "v0001"
    assert "endpoint_config" not in registry.describe("v0002").info, "a rejected version is never deployed"


def _config_name_after(moto: Any, stub: Stubber) -> list[str]:
    """When the trainer sends UpdateEndpoint, the configuration it created is read from moto and the
    endpoint's last DescribeEndpoint answer names it (InService on the new configuration)."""
    found: list[str] = []
    before = {c["EndpointConfigName"] for c in moto.list_endpoint_configs()["EndpointConfigs"]}

    def on_update(params: dict[str, Any], **_: Any) -> None:
        new = {c["EndpointConfigName"] for c in moto.list_endpoint_configs()["EndpointConfigs"]} - before
        if new and not found:
            found.append(new.pop())
            stub.add_response("describe_endpoint", endpoint("InService", found[0]), {"EndpointName": ENDPOINT})

    stub.client.meta.events.register("provide-client-params.sagemaker.UpdateEndpoint", on_update)
    return found
