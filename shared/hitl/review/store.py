"""Redis persistence of loops, flow definitions, the event outbox and reviewer statistics.

One JSON document per loop, changed only inside WATCH/MULTI transactions that also maintain the
indexes, so a loop and its indexes never disagree and a restarted service finds everything as it was.
A status change and the outbox entry announcing it are written in the same transaction.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

import redis

from hitl.review import pagination, timefmt
from hitl.review.flows import FlowDefinition
from hitl.review.loops import HumanLoop, Status

T = TypeVar("T")
KeyFn = Callable[..., str]
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

# The outbox is sent by claiming: a batch moves atomically from the outbox to a list of its own
# (``outbox:claim:<id>``, indexed by claim time) before it is sent, so no two replicas ever hold the
# same event, and nothing is trimmed that was not sent. KEYS: outbox, claim list, claims index;
# ARGV: count, claim id, now (ms).
_CLAIM = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then return items end
redis.call('LTRIM', KEYS[1], #items, -1)
redis.call('RPUSH', KEYS[2], unpack(items))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return items
"""
# A claim given back (the send failed, or its sender vanished): its entries return to the front of
# the outbox, in order. KEYS: outbox, claim list, claims index; ARGV: claim id.
_UNCLAIM = """
local items = redis.call('LRANGE', KEYS[2], 0, -1)
for i = #items, 1, -1 do redis.call('LPUSH', KEYS[1], items[i]) end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return #items
"""


@dataclass
class Change:
    """What a mutation decided: write ``loop`` (None: leave it) and enqueue these outbox entries."""

    loop: HumanLoop | None
    events: list[dict[str, Any]]


class LoopStore:
    def __init__(self, client: redis.Redis, key: KeyFn) -> None:
        self.r = client
        self._key = key

    def k(self, *parts: str) -> str:
        return self._key("review", *parts)

    # --- flow definitions ----------------------------------------------------------------------
    def put_flow(self, arn: str, flow: FlowDefinition) -> None:
        self.r.hset(self.k("flows"), arn, flow.model_dump_json(by_alias=True))

    def get_flow(self, arn: str) -> FlowDefinition | None:
        raw = self.r.hget(self.k("flows"), arn)
        return FlowDefinition.model_validate_json(raw) if raw else None  # type: ignore[arg-type]

    def flows(self) -> dict[str, FlowDefinition]:
        raw: dict[bytes, bytes] = self.r.hgetall(self.k("flows"))  # type: ignore[assignment]
        return {a.decode(): FlowDefinition.model_validate_json(v) for a, v in raw.items()}

    # --- loops ---------------------------------------------------------------------------------
    def get(self, name: str) -> HumanLoop | None:
        raw = self.r.get(self.k("loop", name))
        return HumanLoop.model_validate_json(raw) if raw else None  # type: ignore[arg-type]

    def get_many(self, names: list[str]) -> list[HumanLoop]:
        if not names:
            return []
        raws: list[bytes | None] = self.r.mget([self.k("loop", n) for n in names])  # type: ignore[assignment]
        return [HumanLoop.model_validate_json(raw) for raw in raws if raw]

    def create(self, loop: HumanLoop, count_open: Callable[[], None]) -> HumanLoop | None:
        """Insert ``loop``; returns the existing loop instead when the name is taken.

        ``count_open`` runs inside the transaction (after WATCH) to enforce quotas atomically.
        """
        key = self.k("loop", loop.name)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key, self.k("status", Status.IN_PROGRESS.value))  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if raw:
                        pipe.unwatch()
                        return HumanLoop.model_validate_json(raw)  # type: ignore[arg-type]
                    count_open()
                    pipe.multi()
                    self._write(pipe, None, loop)
                    pipe.execute()
                    return None
                except redis.WatchError:
                    continue

    def open_count(self, flow_arn: str | None = None) -> int:
        if flow_arn is None:
            return int(self.r.scard(self.k("status", Status.IN_PROGRESS.value)))  # type: ignore[arg-type]
        return int(self.r.zcard(self.k("flow-open", flow_arn)))  # type: ignore[arg-type]

    def mutate(self, name: str, fn: Callable[[HumanLoop], Change], missing: Callable[[], T]) -> Change | T:
        """Apply ``fn`` to the current loop atomically (retried on concurrent change)."""
        key = self.k("loop", name)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if not raw:
                        pipe.unwatch()
                        return missing()
                    old = HumanLoop.model_validate_json(raw)  # type: ignore[arg-type]
                    change = fn(old.model_copy(deep=True))
                    if change.loop is None and not change.events:
                        pipe.unwatch()
                        return change
                    pipe.multi()
                    if change.loop is not None:
                        self._write(pipe, old, change.loop)
                    for event in change.events:
                        pipe.rpush(self.k("outbox"), _dumps(event))
                    pipe.execute()
                    return change
                except redis.WatchError:
                    continue

    def delete(self, loop: HumanLoop) -> None:
        with self.r.pipeline(transaction=True) as pipe:
            pipe.delete(self.k("loop", loop.name))
            self._unindex(pipe, loop)
            pipe.execute()

    def _unindex(self, pipe: Any, loop: HumanLoop) -> None:
        pipe.zrem(self.k("all"), loop.name)
        pipe.zrem(self.k("flow", loop.flow_arn), loop.name)
        pipe.zrem(self.k("flow-open", loop.flow_arn), loop.name)
        pipe.srem(self.k("status", loop.status.value), loop.name)
        for index in ("open", "deadlines", "stopping"):
            pipe.zrem(self.k(index), loop.name)
        pipe.srem(self.k("completing"), loop.name)

    def _write(self, pipe: Any, old: HumanLoop | None, new: HumanLoop) -> None:
        created = timefmt.epoch_ms(new.creation_time)
        pipe.set(self.k("loop", new.name), new.model_dump_json())
        if old is None:
            pipe.zadd(self.k("all"), {new.name: created})
            pipe.zadd(self.k("flow", new.flow_arn), {new.name: created})
        elif old.status is not new.status:
            pipe.srem(self.k("status", old.status.value), new.name)
        pipe.sadd(self.k("status", new.status.value), new.name)
        in_progress = new.status is Status.IN_PROGRESS
        if in_progress and not new.completing:
            pipe.zadd(self.k("open"), {new.name: created})
            pipe.zadd(self.k("deadlines"), {new.name: timefmt.epoch_ms(new.deadline)})
        else:
            pipe.zrem(self.k("open"), new.name)
            pipe.zrem(self.k("deadlines"), new.name)
        if in_progress:
            pipe.zadd(self.k("flow-open", new.flow_arn), {new.name: created})
        else:
            pipe.zrem(self.k("flow-open", new.flow_arn), new.name)
        if in_progress and new.completing:
            pipe.sadd(self.k("completing"), new.name)
        else:
            pipe.srem(self.k("completing"), new.name)
        if new.status is Status.STOPPING and new.stop_requested_at is not None:
            pipe.zadd(self.k("stopping"), {new.name: timefmt.epoch_ms(new.stop_requested_at)})
        else:
            pipe.zrem(self.k("stopping"), new.name)

    # --- queries -------------------------------------------------------------------------------
    def page(
        self,
        *,
        flow_arn: str,
        low_ms: float,
        high_ms: float,
        ascending: bool,
        cursor: pagination.Cursor | None,
        limit: int,
    ) -> tuple[list[str], pagination.Cursor | None]:
        """Up to ``limit`` names in (creation time, name) order after ``cursor``, and the next cursor."""
        key = self.k("flow", flow_arn)
        found: list[tuple[int, str]] = []
        start = cursor[0] if cursor else None
        chunk = max(limit + 1, 50)
        offset = 0
        while len(found) <= limit:
            if ascending:
                lo = start if start is not None else low_ms
                raw = self.r.zrangebyscore(key, lo, high_ms, start=offset, num=chunk, withscores=True)
            else:
                hi = start if start is not None else high_ms
                raw = self.r.zrevrangebyscore(key, hi, low_ms, start=offset, num=chunk, withscores=True)
            rows = cast(list[tuple[bytes, float]], raw)
            if not rows:
                break
            offset += len(rows)
            for member, score in rows:
                entry = (int(score), member.decode())
                if cursor is None or pagination.after(entry, cursor, ascending):
                    found.append(entry)
        page, rest = found[:limit], found[limit:]
        return [name for _, name in page], (page[-1] if rest else None)

    def open_names(self, limit: int) -> list[str]:
        return [m.decode() for m in self.r.zrange(self.k("open"), 0, limit - 1)]  # type: ignore[union-attr]

    def due(self, index: str, until: datetime) -> list[str]:
        """Names in ``deadlines`` (expiry) or ``stopping`` (stop requested) up to ``until``."""
        rows = self.r.zrangebyscore(self.k(index), "-inf", timefmt.epoch_ms(until), start=0, num=500)
        return [m.decode() for m in rows]  # type: ignore[union-attr]

    def completing(self) -> list[str]:
        return sorted(m.decode() for m in self.r.smembers(self.k("completing")))  # type: ignore[union-attr]

    def status_counts(self) -> dict[str, int]:
        with self.r.pipeline(transaction=False) as pipe:
            for status in Status:
                pipe.scard(self.k("status", status.value))
            counts = pipe.execute()
        return {status.value: int(n) for status, n in zip(Status, counts, strict=True)}

    def recent(self, limit: int) -> list[HumanLoop]:
        names = [m.decode() for m in self.r.zrevrange(self.k("all"), 0, limit - 1)]  # type: ignore[union-attr]
        return self.get_many(names)

    # --- outbox --------------------------------------------------------------------------------
    def outbox_peek(self, count: int) -> list[dict[str, Any]]:
        rows = self.r.lrange(self.k("outbox"), 0, count - 1)
        return [json.loads(row) for row in rows]  # type: ignore[union-attr]

    def _claim_keys(self, claim: str) -> list[str]:
        return [self.k("outbox"), self.k("outbox", "claim", claim), self.k("outbox", "claims")]

    def outbox_claim(self, count: int) -> tuple[str, list[dict[str, Any]]]:
        """Take up to ``count`` entries for sending, exclusively: (claim id, entries)."""
        claim = uuid.uuid4().hex
        now_ms = int(time.time() * 1000)
        rows = self.r.eval(_CLAIM, 3, *self._claim_keys(claim), count, claim, now_ms)
        return claim, [json.loads(row) for row in rows]  # type: ignore[union-attr]

    def outbox_sent(self, claim: str, retry: list[dict[str, Any]]) -> None:
        """The claim was sent; ``retry`` (entries EventBridge refused) go back to the outbox's end."""
        outbox, claim_key, claims = self._claim_keys(claim)
        with self.r.pipeline(transaction=True) as pipe:
            for event in retry:
                pipe.rpush(outbox, _dumps(event))
            pipe.delete(claim_key)
            pipe.zrem(claims, claim)
            pipe.execute()

    def outbox_unclaim(self, claim: str) -> int:
        return int(self.r.eval(_UNCLAIM, 3, *self._claim_keys(claim), claim))  # type: ignore[arg-type]

    def outbox_recover(self, older_than_ms: int) -> int:
        """Give back claims whose sender vanished (crashed or killed mid-send); returns entries restored."""
        cutoff = int(time.time() * 1000) - older_than_ms
        stale = cast(list[bytes], self.r.zrangebyscore(self.k("outbox", "claims"), "-inf", cutoff))
        return sum(self.outbox_unclaim(m.decode()) for m in stale)

    def outbox_length(self) -> int:
        """Entries not yet sent: waiting, or claimed by a sender."""
        waiting = int(self.r.llen(self.k("outbox")))  # type: ignore[arg-type]
        claimed = [m.decode() for m in self.r.zrange(self.k("outbox", "claims"), 0, -1)]  # type: ignore[union-attr]
        return waiting + sum(int(self.r.llen(self.k("outbox", "claim", c))) for c in claimed)  # type: ignore[misc]

    # --- retention -------------------------------------------------------------------------------
    def ended_before(self, before_ms: int, limit: int) -> list[HumanLoop]:
        """Ended loops created before ``before_ms`` (oldest first), up to ``limit``."""
        names = [m.decode() for m in self.r.zrangebyscore(self.k("all"), "-inf", before_ms, start=0, num=limit)]  # type: ignore[union-attr]
        return [loop for loop in self.get_many(names) if loop.status in _ENDED]

    # --- reviewer statistics -------------------------------------------------------------------
    def record_answer(self, reviewer: str, seconds: float) -> None:
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hincrby(self.k("stats", "answers"), reviewer, 1)
            pipe.hincrbyfloat(self.k("stats", "seconds"), reviewer, seconds)
            pipe.execute()

    def reviewer_stats(self) -> dict[str, tuple[int, float]]:
        answers: dict[bytes, bytes] = self.r.hgetall(self.k("stats", "answers"))  # type: ignore[assignment]
        seconds: dict[bytes, bytes] = self.r.hgetall(self.k("stats", "seconds"))  # type: ignore[assignment]
        return {w.decode(): (int(n), float(seconds.get(w, b"0"))) for w, n in answers.items()}

    # --- coordination --------------------------------------------------------------------------
    @contextmanager
    def lock(self, name: str, ttl_ms: int) -> Iterator[bool]:
        """A best-effort mutual exclusion between service replicas (yields whether it is held)."""
        token = uuid.uuid4().hex
        key = self.k("lock", name)
        held = bool(self.r.set(key, token, nx=True, px=ttl_ms))
        try:
            yield held
        finally:
            if held:
                self.r.eval(_RELEASE, 1, key, token)

    def ping(self) -> bool:
        return bool(self.r.ping())


_ENDED = frozenset({Status.COMPLETED, Status.FAILED, Status.STOPPED})


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))
