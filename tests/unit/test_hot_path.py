"""The submission and logging hot path: what each image costs in Redis round trips, bytes and CPU."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest
import structlog

from hitl import logs
from hitl.adapters.redis_index import ImageIndex
from hitl.celery_app import create_app
from hitl.settings import Settings
from hitl.submit import DETECT_TASK, Client


@pytest.fixture
def hot_settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, key_prefix=f"hot-{uuid.uuid4().hex[:8]}")


def test_claim_records_an_image_once(hot_settings: Settings) -> None:
    index = ImageIndex(hot_settings)
    uri = f"s3://{hot_settings.bucket}/images/a.png"
    assert index.claim("a" * 64, uri, "cli")
    assert not index.claim("a" * 64, "s3://elsewhere/b.png", "api")
    entry = index.get("a" * 64)
    assert entry["state"] == "queued"
    assert (entry["uri"], entry["source"]) == (uri, "cli")
    assert float(entry["submitted_at"]) > 0
    assert index.redis.zscore(hot_settings.key("images"), "a" * 64) is not None


def test_update_with_expiry_sets_fields_and_ttl_together(hot_settings: Settings) -> None:
    index = ImageIndex(hot_settings)
    index.claim("e" * 64, "s3://b/images/e.png", "cli")
    index.update("e" * 64, expire_days=2, state="detected", route="none")
    entry = index.get("e" * 64)
    assert (entry["state"], entry["route"], entry["source"]) == ("detected", "none", "cli")
    assert 2 * 86400 - 5 <= index.redis.ttl(hot_settings.key("image", "e" * 64)) <= 2 * 86400
    index.update("e" * 64, route="audit")  # without expiry: the TTL stays
    assert index.redis.ttl(hot_settings.key("image", "e" * 64)) > 86400


def test_detect_message_carries_the_kwargs_once(hot_settings: Settings) -> None:
    app = create_app(hot_settings.model_copy(update={"redis_url": "memory://"}))
    client = Client(hot_settings, celery=app)
    image_id = "b" * 64
    uri = f"s3://{hot_settings.bucket}/images/{image_id}.png"
    assert client._claim_and_enqueue(image_id, uri, "api")
    with app.connection_for_write() as connection:
        message = connection.default_channel._get("detect")
    assert message["headers"]["task"] == DETECT_TASK
    # Celery would copy a repr of the arguments into the headers, and into the properties when given one.
    assert not {"argsrepr", "kwargsrepr"} & (set(message["headers"]) | set(message["properties"]))
    assert message["properties"]["body_encoding"] == "utf-8"  # not base64
    _, kwargs, _ = json.loads(message["body"])
    assert (kwargs["image_id"], kwargs["uri"], kwargs["source"]) == (image_id, uri, "api")
    assert message["headers"]["id"] == client.index.get(image_id)["task_id"]
    assert len(json.dumps(message)) < 800


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
def test_events_below_the_level_are_dropped_and_the_rest_rendered(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("hot", "WARNING")
    # Filtered first: a disabled event is not time-stamped and merged with the context for nothing.
    assert structlog.get_config()["processors"][0] is structlog.stdlib.filter_by_level
    log = logs.get_logger("hitl.hot")
    log.info("image_detected", image_id="c" * 64)
    log.warning("image_rejected", image_id="d" * 64, reason="too_large")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(x["event"], x["image_id"], x["level"], x["service"]) for x in lines] == [
        ("image_rejected", "d" * 64, "warning", "hot")
    ]


def test_sample_sequence_is_kept_on_the_image_entry_once_per_epoch(hot_settings: Settings) -> None:
    index = ImageIndex(hot_settings)
    first, second = "c" * 64, "d" * 64
    index.claim(first, "s3://b/images/c.png", "cli")
    index.claim(second, "s3://b/images/d.png", "cli")
    assert [index.sample_sequence("e1", first), index.sample_sequence("e1", second)] == [1, 2]
    assert index.sample_sequence("e1", first) == 1, "a redelivered detection keeps its number"
    assert index.sample_sequence("e2", second) == 1, "a new epoch counts from 1"
    index.update(first, expire_days=1, state="detected")
    assert index.get(first)["sample_seq"] == "1"
    # Nothing but the epoch's counter is kept beside the entries: no per-image record outlives them.
    assert sorted(index.redis.scan_iter(hot_settings.key("sampling", "*"))) == [
        hot_settings.key("sampling", "e1", "count"),
        hot_settings.key("sampling", "e2", "count"),
    ]
