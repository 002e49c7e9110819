"""The Redis index of images: state per image, sampling counters, rejections, dead letters.

Redis here is the fast lookup beside the durable records in S3. Every write is idempotent, because
Celery and SQS deliver at least once.
"""

from __future__ import annotations

import base64
import json
import time
from functools import lru_cache
from typing import Any

import numpy as np
import redis

from hitl.settings import Settings

REJECTIONS_KEPT = 10_000
# Descriptors of the images most recently sent for labelling (diverse-uncertainty's memory).
RECENT_DESCRIPTORS_KEPT = 128

# The image's place in the audit count of an epoch, in one atomic step, kept on its own index entry
# (which expires with it): a redelivered detection gets the same number, and nothing outlives the image.
_SEQUENCE_SCRIPT = """
local held = redis.call('HMGET', KEYS[1], 'sample_epoch', 'sample_seq')
if held[1] == ARGV[1] and held[2] then return tonumber(held[2]) end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'sample_epoch', ARGV[1], 'sample_seq', seq)
return seq
"""

# A new submission in one round trip: the first claim of an image id wins, and only it records the
# entry's fields and its place in the time index.
_CLAIM_SCRIPT = """
if redis.call('HSETNX', KEYS[1], 'state', 'queued') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'uri', ARGV[1], 'source', ARGV[2], 'submitted_at', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
"""


def _ttl(days: float) -> int:
    return max(1, int(days * 86400))


@lru_cache(maxsize=8)
def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)


class ImageIndex:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = client or connect(settings.redis_url)
        self._sequence = self.redis.register_script(_SEQUENCE_SCRIPT)
        self._claim = self.redis.register_script(_CLAIM_SCRIPT)

    def _image_key(self, image_id: str) -> str:
        return self.settings.key("image", image_id)

    def claim(self, image_id: str, uri: str, source: str) -> bool:
        """Record a new submission; False when the image is already known (a duplicate)."""
        keys = [self._image_key(image_id), self.settings.key("images")]
        return bool(self._claim(keys=keys, args=[uri, source, f"{time.time():.3f}", image_id]))

    def needs_enqueue(self, image_id: str) -> bool:
        """Claimed but its detect message never sent (a crash between the claim and the send)."""
        entry = self.get(image_id)
        return entry.get("state") == "queued" and not entry.get("enqueued_at")

    def enqueued(self, image_id: str, task_id: str, at: float) -> None:
        """The detect message is in the broker: its id and time, for ``requeue_stale``."""
        self.redis.hset(self._image_key(image_id), mapping={"task_id": task_id, "enqueued_at": f"{at:.3f}"})

    def expire(self, image_id: str, days: float) -> None:
        self.redis.expire(self._image_key(image_id), _ttl(days))

    def read_state(self, pipe: Any, image_id: str) -> None:
        """Queue the read of the entry's ``state`` on ``pipe`` (its reply: the state, or None)."""
        pipe.hget(self._image_key(image_id), "state")

    def get(self, image_id: str) -> dict[str, str]:
        return dict(self.redis.hgetall(self._image_key(image_id)))  # type: ignore[arg-type]

    def update(self, image_id: str, expire_days: float | None = None, **fields: str) -> None:
        """Set ``fields``; with ``expire_days``, the entry expires that long from now (same round trip)."""
        if expire_days is None:
            self.redis.hset(self._image_key(image_id), mapping=dict(fields))  # type: ignore[arg-type]
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self._image_key(image_id), mapping=dict(fields))  # type: ignore[arg-type]
        pipe.expire(self._image_key(image_id), _ttl(expire_days))
        pipe.execute()

    def find(self, prefix: str, limit: int = 5) -> list[str]:
        """Image ids starting with ``prefix`` (for short ids typed by people)."""
        if len(prefix) == 64:
            return [prefix]
        found = []
        for member in self.redis.zscan_iter(self.settings.key("images"), match=f"{prefix}*", count=1000):
            found.append(member[0])
            if len(found) >= limit:
                break
        return found

    def sample_sequence(self, epoch: str, image_id: str) -> int:
        """1-based position of this image in the audit count that started at ``epoch``."""
        keys = [self._image_key(image_id), self.settings.key("sampling", epoch, "count")]
        return int(self._sequence(keys=keys, args=[epoch]))

    def recent_descriptors(self, exclude: str) -> np.ndarray:
        """Descriptors of the images recently sent for labelling, without ``exclude``'s own (so a
        redelivered image is not taken for a near-duplicate of itself)."""
        rows = []
        for entry in self.redis.lrange(self.settings.key("routing", "recent"), 0, RECENT_DESCRIPTORS_KEPT - 1):  # type: ignore[union-attr]
            image_id, _, packed = str(entry).partition("|")
            if image_id != exclude and packed:
                rows.append(np.frombuffer(base64.b64decode(packed), np.float16).astype(np.float64))
        return np.stack(rows) if rows else np.zeros((0, 0))

    def remember_descriptor(self, image_id: str, descriptor: np.ndarray) -> None:
        packed = base64.b64encode(np.asarray(descriptor, np.float16).tobytes()).decode()
        pipe = self.redis.pipeline()
        pipe.lpush(self.settings.key("routing", "recent"), f"{image_id}|{packed}")
        pipe.ltrim(self.settings.key("routing", "recent"), 0, RECENT_DESCRIPTORS_KEPT - 1)
        pipe.execute()

    def reject(self, image_id: str | None, uri: str, reason: str, detail: str, source: str) -> None:
        entry = {
            "image_id": image_id,
            "uri": uri,
            "reason": reason,
            "detail": detail,
            "source": source,
            "at": time.time(),
        }
        pipe = self.redis.pipeline()
        pipe.lpush(self.settings.key("rejections"), json.dumps(entry))
        pipe.ltrim(self.settings.key("rejections"), 0, REJECTIONS_KEPT - 1)
        pipe.hincrby(self.settings.key("rejections", "by_reason"), reason, 1)
        if image_id:
            pipe.hset(self._image_key(image_id), mapping={"state": "rejected", "reason": reason, "detail": detail})
        pipe.execute()

    def rejections(self, limit: int = 100) -> list[dict[str, Any]]:
        raw = self.redis.lrange(self.settings.key("rejections"), 0, limit - 1)
        return [json.loads(item) for item in raw]  # type: ignore[union-attr]

    def rejection_counts(self) -> dict[str, int]:
        raw = self.redis.hgetall(self.settings.key("rejections", "by_reason"))
        return {str(k): int(v) for k, v in raw.items()}  # type: ignore[union-attr]
