"""Prometheus metrics of the review service (``hitl_review_*``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LOOPS_STARTED = Counter("hitl_review_loops_started_total", "Human loops started through StartHumanLoop")
ANSWERS = Counter("hitl_review_answers_total", "Answers submitted by reviewers", ["reviewer"])
TASK_SECONDS = Histogram(
    "hitl_review_task_seconds",
    "Time from opening a task to submitting its answer",
    buckets=(5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
)
LOOPS = Gauge("hitl_review_loops", "Human loops by status", ["status"])
EVENTS_EMITTED = Counter("hitl_review_events_emitted_total", "Status-change events accepted by EventBridge", ["status"])
OUTBOX = Gauge("hitl_review_outbox_events", "Status-change events waiting to be sent")
HTTP_REQUESTS = Counter("hitl_review_http_requests_total", "HTTP requests", ["area", "method", "status"])
API_BODIES = Gauge("hitl_review_api_bodies_in_flight", "A2I request bodies being received (bounded)")
SIGNINS = Counter(
    "hitl_review_signins_total",
    "Portal sign-in attempts by outcome (success, failure, throttled, busy, invalid_form)",
    ["outcome"],
)
