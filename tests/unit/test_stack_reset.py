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
        # kombu 5.7 also lists the bindings of queues that never expire in a second set per exchange,
        # and gives exchanges of expiring queues (the workers' control queues) a deadline.
        client.sadd("_kombu.binding_permanent.detect", binding("detect"))
        client.sadd("_kombu.binding_permanent.shared", binding("train"), binding("other-queue"))
        client.zadd("_kombu.binding_deadlines", {"celery.pidbox": 1.0, "live.pidbox": 2.0})
        client.sadd("_kombu.binding.live.pidbox", binding("someone.live.pidbox"))
        client.set("other:key", "kept")

        cleared = local.reset(tmp_path, settings)

        assert client.get("other:key") == b"kept"
        assert client.smembers("_kombu.binding.shared") == {binding("other-queue").encode()}
        assert client.smembers("_kombu.binding_permanent.shared") == {binding("other-queue").encode()}
        assert not client.exists(settings.key("image", "img-1"), "detect", "unacked", "_kombu.binding.detect")
        assert not client.exists("_kombu.binding_permanent.detect")
        # A deadline whose table is gone goes; one whose table another consumer keeps stays.
        assert client.zrange("_kombu.binding_deadlines", 0, -1) == [b"live.pidbox"]
        assert any("4 exchange bindings" in line for line in cleared), cleared
    finally:
        client.flushdb()
