"""The review budget's state in Redis: loops started in the last hour, loops open, images waiting.

``budget:started`` (sorted set loop name → start time) and ``budget:open`` (set of loop names) are
changed in one atomic step with the check, so concurrent dispatchers never start more than the
budget allows; a loop name reserves its slot once, however often its dispatch is delivered.
``budget:waiting`` (hash image id → JSON) holds the images over budget until the release task
(``hitl.dispatch.release_waiting``, every few seconds from beat) sends the best of them again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict

import redis

from hitl.adapters.redis_index import connect
from hitl.domain.budget import HOUR_SECONDS, BudgetLimits, Waiting, free_slots
from hitl.settings import Settings

# KEYS: started zset, open set; ARGV: loop name, now, per_hour, max_open, hour. 1: reserved (or already).
_RESERVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[5]))
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
local per_hour, max_open = tonumber(ARGV[3]), tonumber(ARGV[4])
if per_hour > 0 and redis.call('ZCARD', KEYS[1]) >= per_hour then return 0 end
if max_open > 0 and redis.call('SCARD', KEYS[2]) >= max_open then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""


class ReviewBudget:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = client or connect(settings.redis_url)
        self._reserve = self.redis.register_script(_RESERVE)
        self.clock: Callable[[], float] = time.time

    @property
    def started_key(self) -> str:
        return self.settings.key("budget", "started")

    @property
    def open_key(self) -> str:
        return self.settings.key("budget", "open")

    @property
    def waiting_key(self) -> str:
        return self.settings.key("budget", "waiting")

    def reserve(self, loop_name: str, limits: BudgetLimits, now: float | None = None) -> bool:
        """Take a slot for this loop if the budget has one (always, when nothing limits)."""
        at = self.clock() if now is None else now
        args: list[str | float] = [loop_name, at, limits.per_hour, limits.max_open, HOUR_SECONDS]
        return bool(self._reserve(keys=[self.started_key, self.open_key], args=args))

    def closed(self, loop_name: str) -> None:
        """The loop ended (or will never start): its open slot is free."""
        self.redis.srem(self.open_key, loop_name)

    def free(self, limits: BudgetLimits, now: float | None = None) -> int | None:
        at = self.clock() if now is None else now
        self.redis.zremrangebyscore(self.started_key, "-inf", at - HOUR_SECONDS)
        started = int(self.redis.zcard(self.started_key))  # type: ignore[arg-type]
        open_loops = int(self.redis.scard(self.open_key))  # type: ignore[arg-type]
        return free_slots(limits, started, open_loops)

    def started_since(self, since: float) -> int:
        return int(self.redis.zcount(self.started_key, since, "+inf"))  # type: ignore[arg-type]

    def wait(self, entry: Waiting) -> None:
        """Keep an image over budget (the first arrival time is kept on redelivery)."""
        known = self.redis.hget(self.waiting_key, entry.image_id)
        if known is not None:
            entry = Waiting(**{**asdict(entry), "arrival": json.loads(str(known))["arrival"]})
        self.redis.hset(self.waiting_key, entry.image_id, json.dumps(asdict(entry)))

    def unwait(self, image_id: str) -> None:
        self.redis.hdel(self.waiting_key, image_id)

    def waiting(self) -> list[Waiting]:
        raw: dict[str, str] = self.redis.hgetall(self.waiting_key)  # type: ignore[assignment]
        return [Waiting(**json.loads(value)) for value in raw.values()]
