"""Redis state of human loops: who they belong to, their status, and which events were applied.

Keys (``settings.key`` namespace):
- ``loop:<name>`` hash: image_id, detection_id, reasons, model_version, attempt, status, started_at,
  ended_at, failure_code, outcome;
- ``loops:open`` sorted set, name → start time, of loops not yet seen terminal (reconciliation);
- ``loop:<name>:applied:<status>``: the (loop, status) idempotency mark, set after the effect is durable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis

from hitl.adapters.redis_index import connect
from hitl.settings import Settings

# Registers a started loop once: only the first registration counts as "started". A loop that
# already ended (its event was applied before a slow or redelivered dispatch registered it) keeps its
# terminal status and is not reopened.
_REGISTER = """
if redis.call('HSETNX', KEYS[1], 'started_at', ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'image_id', ARGV[2], 'detection_id', ARGV[3], 'reasons', ARGV[4],
           'model_version', ARGV[5], 'attempt', ARGV[6])
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == '' or status == 'InProgress' then
  redis.call('HSET', KEYS[1], 'status', 'InProgress')
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[7])
end
return 1
"""


@dataclass(frozen=True)
class LoopInfo:
    name: str
    image_id: str | None = None
    detection_id: str | None = None
    reasons: list[str] = field(default_factory=list)
    model_version: str | None = None
    attempt: int = 0
    status: str | None = None
    started_at: float | None = None
    outcome: str | None = None


class LoopRegistry:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = client or connect(settings.redis_url)
        self._register = self.redis.register_script(_REGISTER)

    def _key(self, name: str) -> str:
        return self.settings.key("loop", name)

    @property
    def open_key(self) -> str:
        return self.settings.key("loops", "open")

    def register(
        self, name: str, image_id: str, detection_id: str, reasons: list[str], model_version: str, attempt: int
    ) -> bool:
        """Record a started loop; True only the first time (for counting)."""
        now = f"{time.time():.3f}"
        args = [now, image_id, detection_id, ",".join(reasons), model_version, str(attempt), name]
        return bool(self._register(keys=[self._key(name), self.open_key], args=args))

    def get(self, name: str) -> LoopInfo | None:
        raw: dict[str, str] = self.redis.hgetall(self._key(name))  # type: ignore[assignment]
        if not raw:
            return None
        return LoopInfo(
            name=name,
            image_id=raw.get("image_id") or None,
            detection_id=raw.get("detection_id") or None,
            reasons=[r for r in raw.get("reasons", "").split(",") if r],
            model_version=raw.get("model_version") or None,
            attempt=int(raw.get("attempt") or 0),
            status=raw.get("status") or None,
            started_at=float(raw["started_at"]) if raw.get("started_at") else None,
            outcome=raw.get("outcome") or None,
        )

    def finish(self, name: str, status: str, outcome: str, **extra: str) -> None:
        fields: dict[Any, Any] = {
            "status": status, "outcome": outcome, "ended_at": f"{time.time():.3f}", **extra
        }
        pipe = self.redis.pipeline()
        pipe.hset(self._key(name), mapping=fields)
        pipe.zrem(self.open_key, name)
        # Ended loops are kept for the retention period; the (loop, status) marks outlive them.
        pipe.expire(self._key(name), int(self.settings.retention_days * 86400))
        pipe.execute()

    def applied(self, name: str, status: str) -> bool:
        return bool(self.redis.exists(self.settings.key("loop", name, "applied", status)))

    def mark_applied(self, name: str, status: str) -> bool:
        """True for the first marker: that caller counts the event as ingested, others as duplicates."""
        key = self.settings.key("loop", name, "applied", status)
        return bool(self.redis.set(key, f"{time.time():.3f}", nx=True, ex=self.settings.idempotency_ttl_seconds))

    def open_loops(self, older_than: float) -> list[str]:
        return list(self.redis.zrangebyscore(self.open_key, "-inf", older_than))  # type: ignore[arg-type]
