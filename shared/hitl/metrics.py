"""Every Prometheus metric the pipeline exports, defined once.

Names follow Prometheus conventions (base units, ``_total`` for counters). Celery prefork workers
run in multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set, the first process of a service
to import this module wipes the directory before any metric (or forked child) writes to it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)


def _prepare_multiprocess_dir() -> None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    # Children inherit the marker, so only the service's first process wipes the directory.
    if not path or os.environ.get("HITL_METRICS_DIR_PREPARED") == path:
        return
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    # Empty it rather than remove it: in Kubernetes it is an emptyDir mount point.
    for entry in directory.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    os.environ["HITL_METRICS_DIR_PREPARED"] = path


_prepare_multiprocess_dir()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)
CONFIDENCE_BUCKETS = tuple(float(b) for b in range(10, 101, 10))
LOOP_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600)

# --- submission --------------------------------------------------------------------------------
IMAGES_SUBMITTED = Counter("hitl_images_submitted_total", "Images accepted for detection", ["source"])
IMAGES_DUPLICATE = Counter("hitl_images_duplicate_total", "Submissions of an image already recorded", ["source"])
IMAGES_REJECTED = Counter("hitl_images_rejected_total", "Images rejected, by reason", ["reason"])

# --- detection and routing ------------------------------------------------------------------------
DETECTIONS = Counter("hitl_detections_total", "Images detected", ["model_version", "backend"])
DETECTED_LABELS = Counter("hitl_detected_labels_total", "Labels found", ["label", "model_version"])
DETECTION_CONFIDENCE = Histogram(
    "hitl_detection_confidence",
    "Top confidence of each detection (0-100)",
    ["model_version"],
    buckets=CONFIDENCE_BUCKETS,
)
INFERENCE_SECONDS = Histogram(
    "hitl_inference_duration_seconds", "Model inference time", ["backend"], buckets=LATENCY_BUCKETS
)
ROUTE_DECISIONS = Counter("hitl_route_decisions_total", "Routing outcomes", ["route"])
SERVING_VERSION = Gauge(
    "hitl_model_serving_info", "1 for the model version this process serves", ["model_version"], multiprocess_mode="max"
)

# --- human loops -----------------------------------------------------------------------------------
LOOPS_STARTED = Counter("hitl_loops_started_total", "Human loops started", ["reason"])
LOOPS_WAITING_BUDGET = Counter(
    "hitl_loops_waiting_budget_total", "Dispatches that found the review budget spent: the image waits for a slot"
)
LOOP_CONFLICTS = Counter("hitl_loop_conflicts_total", "StartHumanLoop answered Conflict (already started)")
LOOP_THROTTLES = Counter("hitl_loop_throttles_total", "StartHumanLoop throttled or over quota", ["error"])
LOOP_DURATION = Histogram(
    "hitl_loop_duration_seconds", "Human loop start to completion", ["status"], buckets=LOOP_BUCKETS
)
EVENTS_INGESTED = Counter("hitl_events_ingested_total", "A2I status-change events applied", ["status"])
EVENTS_DUPLICATE = Counter("hitl_events_duplicate_total", "A2I events ignored as already applied", ["status"])
EVENTS_MALFORMED = Counter("hitl_events_malformed_total", "Messages that could not be applied", ["reason"])
SQS_MESSAGES_FAILED = Counter(
    "hitl_sqs_messages_failed_total",
    "SQS messages whose handling failed (left for redelivery/DLQ)",
    ["queue", "reason"],
)
LABELS_ADDED = Counter("hitl_labels_added_total", "Labelled examples added to the dataset", ["task_type"])
LOOPS_REDISPATCHED = Counter("hitl_loops_redispatched_total", "Expired low-confidence loops started again")
LOOPS_RECONCILED = Counter(
    "hitl_loops_reconciled_total", "Loops applied or repaired by reconciliation instead of an event", ["action"]
)
AUDIT_VERDICTS = Counter("hitl_audit_verdicts_total", "Audit verdicts recorded", ["model_version", "agreement"])

# --- audit and training ---------------------------------------------------------------------------
AUDIT_PRECISION = Gauge(
    "hitl_audit_precision_ratio", "Audited precision per model version", ["model_version"], multiprocess_mode="max"
)
AUDIT_RECALL = Gauge(
    "hitl_audit_recall_ratio", "Audited recall per model version", ["model_version"], multiprocess_mode="max"
)
TRAINING_RUNS = Counter("hitl_training_runs_total", "Training runs by outcome", ["outcome"])
TRAINING_SECONDS = Histogram(
    "hitl_training_duration_seconds", "Training run duration", buckets=(10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
)
MODEL_F1 = Gauge(
    "hitl_model_f1_ratio", "F1 of each model version on its test set", ["model_version"], multiprocess_mode="max"
)

# --- workers and queues ---------------------------------------------------------------------------
TASK_SECONDS = Histogram(
    "hitl_task_duration_seconds", "Celery task runtime", ["task", "outcome"], buckets=LATENCY_BUCKETS
)
TASK_QUEUE_WAIT = Histogram(
    "hitl_task_queue_wait_seconds", "Time from publish to start of a Celery task", ["task"], buckets=WAIT_BUCKETS
)
TASK_RETRIES = Counter(
    "hitl_task_retries_total", "Transient task failures retried with backoff", ["task", "reason"]
)
LOOPS_POISONED = Counter(
    "hitl_loops_unappliable_total", "Finished loops reconciliation could not apply (recorded, skipped)", ["reason"]
)
TASKS_DEAD_LETTERED = Counter(
    "hitl_tasks_dead_lettered_total", "Celery tasks moved to the Redis dead-letter list", ["queue"]
)
# --- dead-letter redrive (issue 11) ---
DLQ_REDRIVEN = Counter("hitl_dlq_redriven_total", "Dead letters sent again by `hitl dlq redrive`", ["queue", "kind"])
QUEUE_DEPTH = Gauge("hitl_queue_depth", "Messages waiting, per queue", ["queue", "kind"], multiprocess_mode="max")
DEAD_LETTER_DEPTH = Gauge(
    "hitl_dead_letter_depth", "Messages in each dead-letter queue", ["queue", "kind"], multiprocess_mode="max"
)
WORKER_HEARTBEAT = Gauge(
    "hitl_worker_heartbeat_timestamp_seconds", "Last heartbeat of a worker", ["service"], multiprocess_mode="max"
)


LOOP_OUTCOMES = ("Completed", "Failed", "Stopped", "Expired")


def initialise_loop_series() -> None:
    """Export the loop series at zero before the first event: a rate() then sees the first change,
    instead of a series that appears already counted and never increases in a short window."""
    for status in LOOP_OUTCOMES:
        LOOP_DURATION.labels(status)
        EVENTS_INGESTED.labels(status)
        EVENTS_DUPLICATE.labels(status)


def serve(port: int, addr: str | None = None) -> None:
    """Serve /metrics; aggregates the children's files when multiprocess mode is on."""
    if addr is None:
        from hitl.settings import get_settings

        addr = get_settings().metrics_addr
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, addr=addr, registry=registry)
    else:
        start_http_server(port, addr=addr)
