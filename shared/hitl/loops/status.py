"""What ``hitl status`` shows about an image's human loop.

The fields live in the image's Redis hash (``ImageIndex``), so ``hitl status --json`` prints them
as they are: ``loop_name``, ``loop_status`` and ``answer_outcome``. The DetectionRecord in S3 carries
the same three fields as the durable copy.
"""

from __future__ import annotations

import time
from typing import Any

from hitl.adapters.records import RecordStore
from hitl.adapters.redis_index import ImageIndex
from hitl.loops.budget import ReviewBudget
from hitl.loops.names import loop_name_for
from hitl.loops.registry import LoopRegistry
from hitl.settings import Settings

# A loop status only moves forward: pending → dead-lettered → InProgress → terminal. A later attempt
# (an expired loop dispatched again) supersedes an earlier one. A late write never moves it back.
STATUS_RANK = {
    "dispatch_pending": 0,
    "waiting_budget": 0,  # over the review budget: waits for a slot (docs/label-efficiency.md)
    "dead_lettered": 1,
    "InProgress": 2,
    "Completed": 3,
    "Failed": 3,
    "Stopped": 3,
    "Expired": 3,
    "Missing": 3,
}

# KEYS[1] image hash; ARGV: loop_name, loop_status, answer_outcome, attempt, rank, loop_error.
# Returns 1 when written. An image hash without ``state`` (expired by retention, or unknown) is left alone.
_FORWARD = """
if redis.call('HEXISTS', KEYS[1], 'state') == 0 then return 0 end
local ranks = {dispatch_pending=0, waiting_budget=0, dead_lettered=1, InProgress=2, Completed=3, Failed=3, Stopped=3,
               Expired=3, Missing=3}
local status = redis.call('HGET', KEYS[1], 'loop_status')
if status and status ~= '' then
  local attempt = tonumber(redis.call('HGET', KEYS[1], 'loop_attempt') or '0') or 0
  local new_attempt = tonumber(ARGV[4])
  if attempt > new_attempt then return 0 end
  if attempt == new_attempt and (ranks[status] or 0) > tonumber(ARGV[5]) then return 0 end
end
redis.call('HSET', KEYS[1], 'loop_name', ARGV[1], 'loop_status', ARGV[2], 'answer_outcome', ARGV[3],
           'loop_attempt', ARGV[4], 'loop_error', ARGV[6])
return 1
"""

# Answer outcomes an image can end with (``answer_outcome``), joined with "+" when a loop serves both
# purposes (e.g. "labelled+audited").
OUTCOMES = (
    "labelled",  # a manifest line was added to the labelled dataset
    "no_label",  # "None of the Above": nothing to learn, recorded as such
    "no_objects",  # the reviewer drew no box
    "verified",  # label-verification verdicts only (no manifest line)
    "audited",  # an audit verdict was recorded
    "expired",
    "failed",
    "stopped",
    "redispatched",
)


class LoopStatusWriter:
    """Writes the loop fields to the index hash and the DetectionRecord."""

    def __init__(self, settings: Settings, index: ImageIndex | None = None, records: RecordStore | None = None) -> None:
        self.settings = settings
        self.index = index or ImageIndex(settings)
        self.records = records or RecordStore(settings)
        self._forward = self.index.redis.register_script(_FORWARD)
        self.budget = ReviewBudget(settings, self.index.redis)

    @property
    def pending_key(self) -> str:
        """Sorted set image_id → time of routed detections whose loop is not yet started."""
        return self.settings.key("dispatch", "pending")

    def pending(self, image_id: str) -> None:
        """A dispatch is being sent: shown as ``dispatch_pending`` until its loop starts."""
        pipe = self.index.redis.pipeline()
        pipe.zadd(self.pending_key, {image_id: time.time()})
        pipe.hsetnx(self.index._image_key(image_id), "loop_status", "dispatch_pending")
        pipe.execute()

    def dead_lettered(self, image_id: str, detection_id: str, attempt: int, reason: str) -> None:
        name = loop_name_for(detection_id, attempt) if detection_id else ""
        self._write(image_id, name, "dead_lettered", "", attempt, reason)
        self.index.redis.zrem(self.pending_key, image_id)
        if name:
            self.budget.closed(name)  # it never started

    def _write(self, image_id: str, loop_name: str, status: str, outcome: str, attempt: int, error: str = "") -> bool:
        args = [loop_name, status, outcome, str(attempt), str(STATUS_RANK.get(status, 0)), error]
        return bool(self._forward(keys=[self.index._image_key(image_id)], args=args))

    def update(self, image_id: str, loop_name: str, loop_status: str, answer_outcome: str = "") -> None:
        tail = loop_name.rsplit("-r", 1)[1] if "-r" in loop_name else ""
        attempt = int(tail) if tail.isdigit() else 0
        if loop_status != "dispatch_pending":
            self.index.redis.zrem(self.pending_key, image_id)
        if STATUS_RANK.get(loop_status) == 3 and loop_name:
            self.budget.closed(loop_name)  # its review slot is free
        if not self._write(image_id, loop_name, loop_status, answer_outcome, attempt):
            return  # a later state is already recorded: the record keeps it too
        record = self.records.get(image_id)
        if record is not None and (record.loop_name, record.loop_status, record.answer_outcome) != (
            loop_name,
            loop_status,
            answer_outcome or None,
        ):
            record.loop_name, record.loop_status, record.answer_outcome = loop_name, loop_status, answer_outcome or None
            self.records.put(record)


def loop_status(settings: Settings, image_id: str) -> dict[str, Any]:
    """The loop fields of one image, with the loop's own registry entry when known."""
    entry = ImageIndex(settings).get(image_id)
    name = entry.get("loop_name")
    result: dict[str, Any] = {
        "loop_name": name,
        "loop_status": entry.get("loop_status"),
        "answer_outcome": entry.get("answer_outcome") or None,
    }
    info = LoopRegistry(settings).get(name) if name else None
    if info is not None:
        result["loop"] = {
            "reasons": info.reasons,
            "attempt": info.attempt,
            "status": info.status,
            "started_at": info.started_at,
            "outcome": info.outcome,
        }
    return result
