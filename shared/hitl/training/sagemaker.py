"""Incremental training of SageMaker's built-in object-detection algorithm, served by an endpoint.

As the SageMaker + A2I retraining post does: the training job reads the augmented manifests in Pipe
mode (augmented manifests work only there), the ``model`` channel warm-starts it from the serving
model's artifact (``use_pretrained_model=0``), and the job reports ``validation:mAP`` on the fixed
test split, which is the gate's measure. A version that passes becomes a model, an endpoint
configuration, then UpdateEndpoint (no availability loss); the pointer names the endpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hitl import aws
from hitl.logs import get_logger
from hitl.model.data import write_manifest
from hitl.model.registry import ModelRegistry, ModelVersion
from hitl.settings import Settings
from hitl.training.backends import Candidate, TrainingFailed, TrainingSet, dataset_shape, recorded_score
from hitl.training.rekognition import Poller

log = get_logger("hitl.training.sagemaker")

METRIC = "validation:mAP"
RUNNING_JOB = {"InProgress", "Stopping"}
ENDPOINT_UPDATING = {"Creating", "Updating", "SystemUpdating", "RollingBack"}


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


class SageMakerBackend:
    name = "sagemaker"
    metric = METRIC

    def __init__(self, settings: Settings, registry: ModelRegistry, poller: Poller | None = None) -> None:
        for variable, value in (
            ("HITL_SAGEMAKER_ROLE_ARN", settings.sagemaker_role_arn),
            ("HITL_SAGEMAKER_TRAINING_IMAGE", settings.sagemaker_training_image),
            ("HITL_SAGEMAKER_ENDPOINT_NAME", settings.sagemaker_endpoint_name),
        ):
            if not value:
                raise ValueError(f"{variable} is required for the sagemaker training backend")
        self.settings = settings
        self.registry = registry
        self.poller = poller or Poller(
            settings.training_poll_initial_seconds,
            settings.training_poll_max_seconds,
            settings.training_timeout_seconds,
        )

    @property
    def client(self) -> Any:
        return aws.client("sagemaker")

    # --- training --------------------------------------------------------------------------------
    def _channel(self, name: str, key: str, attribute: str) -> dict[str, Any]:
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "AugmentedManifestFile",
                    "S3Uri": self.settings.s3_uri(key),
                    "S3DataDistributionType": "FullyReplicated",
                    "AttributeNames": ["source-ref", attribute],
                }
            },
            "ContentType": "application/x-recordio",
            "RecordWrapperType": "RecordIO",
            "InputMode": "Pipe",
        }

    def _warm_start(self) -> str | None:
        """The serving model's artifact, if SageMaker trained it."""
        serving = self.registry.serving_version()
        if serving is None:
            return None
        info = self.registry.describe(serving).info
        return str(info["model_artifact"]) if info.get("backend") == self.name and info.get("model_artifact") else None

    def train(self, data: TrainingSet) -> Candidate:
        if not data.test_lines:
            raise TrainingFailed(f"no test manifest at {self.settings.test_manifest_key}")
        kind, labels, attribute = dataset_shape(data.train_lines)
        if kind != "detection":
            raise TrainingFailed("the built-in object-detection algorithm trains on detection manifests only")
        meta = self.registry.reserve(
            kind,
            labels,
            write_manifest(data.train_lines),
            test_manifest=write_manifest(data.test_lines),
            backend=self.name,
        )
        try:
            return self._train(meta, data, labels, attribute)
        except Exception as exc:
            self.registry.set_status(meta.version, "rejected", f"training failed: {exc}")
            raise

    def _train(self, meta: ModelVersion, data: TrainingSet, labels: list[str], attribute: str) -> Candidate:
        job = f"hitl-od-{meta.version}-{_stamp()}"
        channels = [
            self._channel("train", self.registry.manifest_key(meta.version, "train.manifest"), attribute),
            self._channel("validation", self.registry.manifest_key(meta.version, "test.manifest"), attribute),
        ]
        warm = self._warm_start()
        if warm:
            channels.append(
                {
                    "ChannelName": "model",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": warm,
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                    "ContentType": "application/x-sagemaker-model",
                    "InputMode": "File",
                }
            )
        hyperparameters = {
            **self.settings.sagemaker_hyperparameters,
            "num_classes": str(len(labels)),
            "num_training_samples": str(len(data.train_lines)),
            # Warm-started from the serving weights, as the first job was from the pretrained ones.
            "use_pretrained_model": "0" if warm else "1",
        }
        self.client.create_training_job(
            TrainingJobName=job,
            AlgorithmSpecification={
                "TrainingImage": self.settings.sagemaker_training_image,
                "TrainingInputMode": "Pipe",
            },
            RoleArn=self.settings.sagemaker_role_arn,
            InputDataConfig=channels,
            OutputDataConfig={"S3OutputPath": self.settings.s3_uri(self.settings.sagemaker_output_prefix)},
            ResourceConfig={
                "InstanceType": self.settings.sagemaker_training_instance_type,
                "InstanceCount": 1,
                "VolumeSizeInGB": 50,
            },
            StoppingCondition={"MaxRuntimeInSeconds": self.settings.sagemaker_max_runtime_seconds},
            HyperParameters=hyperparameters,
        )
        log.info("sagemaker_training_started", version=meta.version, job=job, warm_start=warm)
        for _ in self.poller.waits():
            described = self.client.describe_training_job(TrainingJobName=job)
            status = described["TrainingJobStatus"]
            if status in RUNNING_JOB:
                continue
            if status != "Completed":
                raise TrainingFailed(f"training job {job}: {status}: {described.get('FailureReason', '')}".rstrip(": "))
            scores = {m["MetricName"]: float(m["Value"]) for m in described.get("FinalMetricDataList", [])}
            if METRIC not in scores:
                raise TrainingFailed(f"training job {job} reported no {METRIC}")
            artifact = described["ModelArtifacts"]["S3ModelArtifacts"]
            info = {
                "training_job": job,
                "model_artifact": artifact,
                "warm_start": warm,
                "train_images": len(data.train_lines),
            }
            self.registry.record_training(
                meta.version, target=self.settings.sagemaker_endpoint_name, metrics={METRIC: scores[METRIC]}, info=info
            )
            return Candidate(meta.version, scores[METRIC], METRIC, len(data.train_lines), info=info)
        raise TrainingFailed("unreachable")  # pragma: no cover - waits() raises first

    def serving_score(self, serving: str, data: TrainingSet) -> float | None:
        return recorded_score(self.registry, serving, METRIC)

    # --- serving -----------------------------------------------------------------------------------
    def deploy(self, candidate: Candidate, inference_units: int) -> None:
        """CreateModel → CreateEndpointConfig → UpdateEndpoint (CreateEndpoint the first time), then
        wait until the endpoint is InService on the new configuration."""
        config = candidate.info.get("endpoint_config")
        if not config:
            name = f"hitl-od-{candidate.version}-{_stamp()}"
            self.client.create_model(
                ModelName=name,
                PrimaryContainer={
                    "Image": self.settings.sagemaker_training_image,  # the algorithm's image also serves
                    "ModelDataUrl": candidate.info["model_artifact"],
                },
                ExecutionRoleArn=self.settings.sagemaker_role_arn,
            )
            self.client.create_endpoint_config(
                EndpointConfigName=name,
                ProductionVariants=[
                    {
                        "VariantName": candidate.version,
                        "ModelName": name,
                        "InitialInstanceCount": max(1, inference_units),
                        "InstanceType": self.settings.sagemaker_endpoint_instance_type,
                    }
                ],
            )
            config = name
            meta = self.registry.describe(candidate.version)
            self.registry.record_training(
                candidate.version,
                target=self.settings.sagemaker_endpoint_name,
                metrics=meta.metrics or {},
                info={"endpoint_config": config},
            )
        endpoint = self.settings.sagemaker_endpoint_name
        try:
            self.client.describe_endpoint(EndpointName=endpoint)
            exists = True
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ValidationException":
                raise
            exists = False
        if exists:
            self.client.update_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        else:
            self.client.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
        for _ in self.poller.waits():
            described = self.client.describe_endpoint(EndpointName=endpoint)
            status = described["EndpointStatus"]
            if status in ENDPOINT_UPDATING:
                continue
            # A failed update rolls back to InService on the old configuration: that is no success.
            if status != "InService" or described.get("EndpointConfigName", config) != config:
                raise TrainingFailed(f"endpoint {endpoint}: {status}: {described.get('FailureReason', '')}")
            log.info("sagemaker_endpoint_updated", version=candidate.version, endpoint=endpoint, config=config)
            return

    def retire(self, serving: ModelVersion) -> list[str]:
        # UpdateEndpoint replaced the previous variant; its model and configuration stay for rollback.
        return []
