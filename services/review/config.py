"""Build the service's parts from :class:`hitl.settings.Settings`."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import redis

from hitl.logs import get_logger
from hitl.review import flows, reviewers
from hitl.review.publisher import AwsPublisher
from hitl.review.service import ReviewService, ServiceConfig
from hitl.review.store import LoopStore
from hitl.settings import Settings
from services.review import metrics

log = get_logger()


@dataclass
class Runtime:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    service: ReviewService
    api_keys: dict[str, str]
    reviewers: dict[str, reviewers.Reviewer]
    session_secret: str


def api_keys(settings: Settings) -> dict[str, str]:
    keys = dict(settings.review_api_keys)
    if settings.review_api_keys_file:
        keys.update(json.loads(Path(settings.review_api_keys_file).read_text()))
    if not keys:
        log.warning("review_api_keys_missing", detail="every A2I API call will be refused")
    return keys


def session_secret(settings: Settings) -> str:
    if settings.review_session_secret:
        return settings.review_session_secret
    if settings.review_session_secret_file:
        return Path(settings.review_session_secret_file).read_text().strip()
    log.warning("review_session_secret_generated", detail="sessions end when this process restarts")
    return secrets.token_urlsafe(32)


def flow_definitions(settings: Settings) -> list[flows.FlowDefinition]:
    if settings.review_flow_definitions_file:
        return flows.load_file(Path(settings.review_flow_definitions_file))
    return [flows.default_flow(settings.review_default_flow_name, settings.bucket, settings.a2i_output_prefix)]


def build(settings: Settings) -> Runtime:
    store = LoopStore(redis.Redis.from_url(settings.redis_url), settings.key)
    config = ServiceConfig(
        region=settings.review_region,
        account=settings.review_account_id,
        event_source=settings.a2i_event_source,
        event_bus=settings.event_bus,
        image_buckets=frozenset(settings.review_image_buckets or [settings.bucket]),
        max_input_chars=settings.review_max_input_chars,
        max_open_loops=settings.review_max_open_loops,
        max_image_bytes=settings.review_max_image_bytes,
        stop_delay_seconds=settings.review_stop_delay_seconds,
        default_output_path=f"s3://{settings.bucket}/{settings.a2i_output_prefix.strip('/')}",
    )

    def on_answer(reviewer: str, seconds: float) -> None:
        metrics.ANSWERS.labels(reviewer=reviewer).inc()
        metrics.TASK_SECONDS.observe(seconds)

    service = ReviewService(
        store,
        AwsPublisher(),
        config,
        on_event=lambda status: metrics.EVENTS_EMITTED.labels(status=status).inc(),
        on_answer=on_answer,
    )
    found = reviewers.load(Path(settings.review_reviewers_file)) if settings.review_reviewers_file else {}
    if not found:
        log.warning("review_reviewers_missing", detail="nobody can sign in to the portal")
    return Runtime(settings, service, api_keys(settings), found, session_secret(settings))
