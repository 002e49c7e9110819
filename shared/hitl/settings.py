"""Static configuration, one class for every service.

AWS endpoints are deliberately absent: boto3 reads ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_<SERVICE>`` itself, so a local run and an AWS run differ only in environment.
Runtime knobs that operators change while the pipeline runs (thresholds, sampling, training gates)
live in SSM Parameter Store instead: see :mod:`hitl.params`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hitl.domain.images import ImageLimits

DetectBackend = Literal["local", "rekognition", "sagemaker", "fixed"]
# "local" is the embedded model's former name, still accepted.
TrainBackend = Literal["embedded", "local", "rekognition", "sagemaker"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HITL_", env_file=".env", extra="ignore")

    # --- storage -----------------------------------------------------------------------------
    bucket: str = "hitl-pipeline-local"
    images_prefix: str = "images/"
    uploads_prefix: str = "images_for_detection/"
    records_prefix: str = "detections/"
    models_prefix: str = "models/"
    datasets_prefix: str = "datasets/"
    labeled_folder_prefix: str = "images_labeled_by_folder/"
    a2i_output_prefix: str = "a2i-output/"

    # --- Redis: Celery broker, result-less; also the index and idempotency store --------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "hitl"

    # --- SQS / EventBridge -------------------------------------------------------------------
    uploads_queue: str = "hitl-uploads"
    intake_wait_seconds: int = 20  # SQS's longest poll: fewest empty receives; SIGTERM abandons it
    events_queue: str = "hitl-a2i-events"
    dlq_suffix: str = "-dlq"
    sqs_max_receive_count: int = 5
    event_bus: str = "default"
    # AWS refuses customer events with an ``aws.`` source; the rule matches this one too.
    a2i_event_source: str = "hitl.review"
    a2i_rule_name: str = "hitl-a2i-status-change"

    # --- SSM runtime parameters ----------------------------------------------------------------
    params_path: str = "/hitl/"
    params_cache_seconds: float = 10.0

    # --- detection ---------------------------------------------------------------------------
    detect_backend: DetectBackend = "local"
    rekognition_project_arn: str = ""
    rekognition_project_version_arn: str = ""
    sagemaker_endpoint_name: str = ""
    sagemaker_class_map: dict[str, str] = Field(default_factory=dict)
    model_cache_seconds: float = 10.0
    # Threads of the embedded model (intra-op and BLAS) per worker process. 0: the cores divided among the
    # worker's processes (HITL_WORKER_CONCURRENCY), so concurrent predictions do not oversubscribe.
    model_threads: int = 0
    fixed_backend_latency_ms: float = 0.0
    max_image_bytes: int = 15 * 1024 * 1024
    max_image_pixels: int = 4096 * 4096
    min_image_side: int = 64
    max_image_side: int = 4096

    # --- human review --------------------------------------------------------------------------
    flow_definition_arn: str = ""
    dispatch_rate_limit: str = "20/s"

    # --- human loops: dispatcher, ingestor, reconciliation, audit (shared/hitl/loops) ---------------
    # Choices offered to reviewers; empty: the detection's own labels (else the flow's Labels).
    loop_labels: list[str] = Field(default_factory=list)
    dispatch_max_attempts: int = 6  # StartHumanLoop tries on Throttling/ServiceQuotaExceeded
    dispatch_backoff_initial: float = 0.5  # seconds; doubles per try, with jitter
    dispatch_backoff_max: float = 15.0
    max_redispatches: int = 1  # an expired low-confidence loop is started again at most this often
    labeled_dataset: str = "human-labels"  # datasets/<name>/lines/<loop>.json
    detection_attribute: str = "bounding-box"
    classification_attribute: str = "label"
    audits_prefix: str = "audits/"
    idempotency_ttl_seconds: int = 90 * 24 * 3600  # (loop, status) marks; longer than any redelivery
    ingest_wait_seconds: int = 20
    ingest_visibility_seconds: int = 60
    ingest_batch_size: int = 10
    reconcile_interval_seconds: int = 300
    reconcile_horizon_hours: float = 14 * 24.0  # ListHumanLoops window (A2I keeps loops listed)
    reconcile_min_age_seconds: float = 120.0  # an open loop younger than this is not described yet

    # --- review service (services/review: A2I runtime API + reviewer portal) ---------------------
    review_host: str = "127.0.0.1"
    review_port: int = 8090
    review_account_id: str = Field(default="000000000000", pattern=r"^[0-9]{12}$")
    review_region: str = Field(default_factory=lambda: os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    # JSON file of flow definitions (services/review/README.md); empty: one default local flow.
    review_flow_definitions_file: Path | None = None
    review_default_flow_name: str = "hitl-local-review"
    # A2I API SigV4 keys: access-key-id -> secret, inline (JSON) and/or from a JSON file.
    review_api_keys: dict[str, str] = Field(default_factory=dict)
    review_api_keys_file: Path | None = None
    review_clock_skew_seconds: int = 300
    review_api_rate_per_second: float = 100.0  # per access key (burst: twice that); 0: no throttling
    review_max_open_loops: int = 100_000  # InProgress loops; above it StartHumanLoop answers 402
    review_max_input_chars: int = 3_145_728
    # Reviewers: JSON file of {name, password_hash (argon2), roles}.
    review_reviewers_file: Path | None = None
    review_session_secret: str = ""
    review_session_secret_file: Path | None = None
    review_session_max_age: int = 8 * 3600
    # Secure cookies and HSTS; unset: on whenever review_host is not a loopback address.
    review_secure_cookies: bool | None = None
    review_image_buckets: list[str] = Field(default_factory=list)  # empty: [bucket]
    review_max_image_bytes: int = 15 * 1024 * 1024
    review_sweep_interval: float = 1.0
    review_stop_delay_seconds: float = 0.0  # how long a stopped loop stays Stopping
    review_metrics_token: str = ""  # empty: /metrics answers loopback clients only
    # --- review service: flow-definition admin API ---
    # Access key ids (of review_api_keys) that may create and change flow definitions; empty: none.
    review_admin_access_keys: list[str] = Field(default_factory=list)

    # --- review service: accounts, sign-in throttling, strict API input ---------------------------
    # The first admin, created at start when missing: JSON {"name", "password" or "password_hash"}.
    review_admin_file: Path | None = None
    review_login_concurrency: int = Field(default=2, ge=1, le=16)  # password checks at once (64 MiB each)
    review_login_waiting: int = Field(default=32, ge=1)  # sign-ins queued for a check; beyond: 429
    review_signin_free_failures: int = 5  # per client address and per account, within the window
    review_signin_window_seconds: int = 900
    review_signin_backoff_seconds: float = 2.0  # doubles with every further failure
    review_signin_backoff_max_seconds: float = 900.0
    review_login_token_seconds: int = 900  # a sign-in form's one-use CSRF token lives this long
    # Proxies whose X-Forwarded-For names the client (uvicorn's forwarded_allow_ips); empty: none.
    review_forwarded_allow_ips: str = ""
    # Task images only from these key prefixes; empty: any key outside the pipeline's own data.
    review_image_prefixes: list[str] = Field(default_factory=list)
    review_max_json_depth: int = 32
    review_api_concurrent_bodies: int = Field(default=8, ge=1)  # A2I request bodies read at once
    review_api_body_wait_seconds: float = 2.0  # a request waits this long for a slot, then 429

    # --- training ------------------------------------------------------------------------------
    train_backend: TrainBackend = "embedded"
    training_event_source: str = "hitl.training"
    seed_manifest_key: str = "datasets/seed/manifest.jsonl"  # the user's initial labelled images
    test_manifest_key: str = "datasets/test/manifest.jsonl"  # the fixed test split, never trained on
    notifications_queue: str = "hitl-notifications"
    notifications_rule_name: str = "hitl-training-notices"

    # --- AWS training backends (HITL_TRAIN_BACKEND=rekognition|sagemaker) ------------------------
    rekognition_output_prefix: str = "rekognition-output/"  # CreateProjectVersion OutputConfig
    training_poll_initial_seconds: float = 30.0  # Describe* backoff: doubles up to the maximum
    training_poll_max_seconds: float = 300.0
    training_timeout_seconds: float = 6 * 3600.0
    sagemaker_role_arn: str = ""  # the training job's and the model's execution role
    # The built-in object-detection algorithm's image in the region (AWS docs: "Docker Registry Paths").
    sagemaker_training_image: str = ""
    sagemaker_training_instance_type: str = "ml.p3.2xlarge"
    sagemaker_endpoint_instance_type: str = "ml.m5.xlarge"
    sagemaker_output_prefix: str = "sagemaker-output/"
    sagemaker_max_runtime_seconds: int = 4 * 3600
    # Hyperparameters beyond those the trainer derives (num_classes, num_training_samples, ...).
    sagemaker_hyperparameters: dict[str, str] = Field(
        default_factory=lambda: {"base_network": "resnet-50", "mini_batch_size": "16", "epochs": "30",
                                 "learning_rate": "0.001", "image_shape": "512", "label_width": "350"}
    )

    # --- A2I on AWS (``hitl aws setup``) -----------------------------------------------------------
    a2i_workteam_arn: str = ""  # the private workteam (Cognito or OIDC) that reviews
    a2i_role_arn: str = ""  # the flow definitions' execution role (deploy/iam/a2i-execution.json)
    a2i_flow_prefix: str = "hitl"  # flows <prefix>-bounding-box, -classification, -verification
    a2i_task_count: int = Field(default=1, ge=1, le=3)
    a2i_task_lifetime_seconds: int = 7 * 24 * 3600
    a2i_task_time_limit_seconds: int = Field(default=3600, ge=30)
    aws_setup_on_bootstrap: bool = False  # ``hitl stack bootstrap`` also runs ``hitl aws setup``

    # --- Celery reliability --------------------------------------------------------------------
    task_soft_time_limit: int = 120
    task_time_limit: int = 150
    # Above the longest task and any retry countdown, so Redis does not redeliver live work.
    visibility_timeout: int = 3600
    max_deliveries: int = 3

    # --- reliability: transient-failure retries, dead letters, retention (issue: nothing lost) ----
    # Every task retries connection errors, timeouts, 5xx and throttling this many times, waiting
    # initial * 2^n seconds (capped, with jitter) between tries; then it is dead-lettered with a reason.
    task_retry_budget: int = 8
    task_retry_backoff_initial: float = 2.0
    task_retry_backoff_max: float = 300.0
    # A routed detection with no loop after this long is dispatched again by reconciliation.
    dispatch_pending_seconds: float = 900.0
    # A queued image whose detect message is gone from the broker this long after its enqueue is re-sent.
    requeue_stale_after_seconds: float = 600.0
    # Redis entries kept once their durable copy exists (image hashes, ended loops, review loops).
    retention_days: float = 30.0

    worker_concurrency: int = 0  # 0: one process per core the worker may use (hitl.cpus.available_cpus)

    # --- local stack (``make up``): loopback ports ------------------------------------------------
    stack_moto_port: int = 4566
    stack_metrics_base_port: int = 9101
    cors_allowed_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:*", "http://localhost:*", "https://*.sagemaker.aws"]
    )

    # --- local stack state (issue 11): its own Redis with an append-only file under run_dir ---------
    stack_redis_port: int = 6380  # used when HITL_REDIS_URL is not set
    # An import or a promoted version with new labels adds them to the review flow (issue 11).
    flow_labels_follow_dataset: bool = True

    # --- local stack supervision (shared/hitl/stack/supervisor.py): a process that exits by itself is
    # restarted, as Kubernetes' restart policy does; the wait doubles from the initial one up to the
    # maximum, and starts again from the initial one once a process has stayed up for ``reset``.
    stack_supervise: bool = True
    stack_restart_backoff_initial: float = 1.0
    stack_restart_backoff_max: float = 60.0
    stack_restart_backoff_reset: float = 60.0

    # --- local stack under IAM (shared/hitl/stack/iam.py): each service its own user and policy ------
    stack_enforce_iam: bool = False
    stack_iam_policy_dir: Path | None = None  # default deploy/iam

    # --- operations ------------------------------------------------------------------------------
    run_dir: Path = Path(".run")
    log_level: str = "INFO"
    metrics_port: int = 0  # 0: do not serve metrics from this process
    metrics_addr: str = "127.0.0.1"  # 0.0.0.0 in containers, where Prometheus scrapes the pod

    def image_limits(self) -> ImageLimits:
        return ImageLimits(
            max_bytes=self.max_image_bytes,
            max_pixels=self.max_image_pixels,
            min_side=self.min_image_side,
            max_side=self.max_image_side,
        )

    def key(self, *parts: str) -> str:
        """A Redis key in this deployment's namespace."""
        return ":".join((self.key_prefix, *parts))

    def s3_uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
