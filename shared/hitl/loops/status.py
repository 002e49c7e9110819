"""What ``hitl status`` shows about an image's human loop.

The fields live in the image's Redis hash (``ImageIndex``), so ``hitl status --json`` prints them
as they are: ``loop_name``, ``loop_status`` and ``answer_outcome``. The DetectionRecord in S3 carries
the same three fields as the durable copy.
"""

from __future__ import annotations

from typing import Any

from hitl.adapters.records import RecordStore
from hitl.adapters.redis_index import ImageIndex
from hitl.loops.registry import LoopRegistry
from hitl.settings import Settings

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
        self.index = index or ImageIndex(settings)
        self.records = records or RecordStore(settings)

    def update(self, image_id: str, loop_name: str, loop_status: str, answer_outcome: str = "") -> None:
        self.index.update(image_id, loop_name=loop_name, loop_status=loop_status, answer_outcome=answer_outcome)
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
