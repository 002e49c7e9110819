"""``hitl stack reset`` on a Redis the stack shares: its own keys, queues and bindings go, others' stay."""

from __future__ import annotations

from pathlib import Path

import redis
from kombu.transport.redis import Channel

from hitl.settings import Settings
from hitl.stack import local

SEPARATOR = Channel.sep  # kombu's join of routing key, pattern and queue


def binding(queue: str) -> str:
    return SEPARATOR.join([queue, "", queue])


def test_reset_clears_only_this_deployments_state(settings: Settings, tmp_path: Path) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    try:
        client.set(settings.key("image", "img-1"), "x")
        client.rpush("detect", "message")
        client.hset("unacked", "tag", "message")
        client.sadd("_kombu.binding.detect", binding("detect"))
        client.sadd("_kombu.binding.shared", binding("train"), binding("other-queue"))
        client.set("other:key", "kept")

        cleared = local.reset(tmp_path, settings)

        assert client.get("other:key") == b"kept"
        assert client.smembers("_kombu.binding.shared") == {binding("other-queue").encode()}
        assert not client.exists(settings.key("image", "img-1"), "detect", "unacked", "_kombu.binding.detect")
        assert any("2 exchange bindings" in line for line in cleared), cleared
    finally:
        client.flushdb()
