"""``hitl repair``: rebuild Redis from what S3 and the A2I API hold, after Redis lost data.

S3 is the record; Redis is the index beside it. Rebuilt here, each step idempotent and additive
(a field already present is left alone, a loop status only moves forward), so it is safe to run
twice and while the workers run:

- the image index from ``detections/`` (an entry per DetectionRecord, ``detected``, with its loop
  fields); a routed detection with no loop anywhere is marked ``dispatch_pending``, and
  reconciliation dispatches it;
- the loop registry from the review service (ListHumanLoops on the flow definition), and the
  (loop, Completed) marks of loops whose dataset line or audit verdict is in S3; a finished loop
  without its effect is left unmarked: reconciliation applies it;
- the dataset's example set from its lines (an example Redis had lost also counts as untrained, so
  it is trained on rather than forgotten) and the audit counts from ``audits/``.

Not rebuildable: the audit sampling counter's position (its next sample starts a fresh count).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from hitl import aws
from hitl.adapters.redis_index import ImageIndex
from hitl.domain.a2i_events import TERMINAL_STATUSES
from hitl.domain.records import DetectionRecord
from hitl.logs import get_logger
from hitl.loops import a2i
from hitl.loops.audit import AuditStore, AuditVerdict
from hitl.loops.dataset import LabelledDataset
from hitl.loops.names import loop_name_for
from hitl.loops.registry import LoopRegistry
from hitl.loops.status import LoopStatusWriter
from hitl.settings import Settings

log = get_logger("hitl.repair")


def _objects(settings: Settings, prefix: str) -> Iterator[str]:
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=settings.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            yield str(item["Key"])


def _read(settings: Settings, key: str) -> bytes:
    body: bytes = aws.client("s3").get_object(Bucket=settings.bucket, Key=key)["Body"].read()
    return body


class Repair:
    def __init__(self, settings: Settings, client: Any = None) -> None:
        self.settings = settings
        self.client = client
        self.index = ImageIndex(settings)
        self.redis = self.index.redis
        self.registry = LoopRegistry(settings, client=self.redis)
        self.status = LoopStatusWriter(settings, index=self.index)
        self.dataset = LabelledDataset(settings, client=self.redis)
        self.audits = AuditStore(settings, client=self.redis)
        self.changes: Counter[str] = Counter()

    def run(self) -> dict[str, int]:
        records = self._images()
        self._loops(records)
        self._dataset()
        self._audits()
        self._pending(records)
        log.info("repaired", **self.changes)
        return dict(self.changes)

    # --- images ------------------------------------------------------------------------------------
    def _images(self) -> dict[str, DetectionRecord]:
        """Every DetectionRecord by detection id (kept for the loop steps)."""
        found: dict[str, DetectionRecord] = {}
        for key in _objects(self.settings, self.settings.records_prefix):
            if not key.endswith(".json"):
                continue
            try:
                record = DetectionRecord.model_validate_json(_read(self.settings, key))
            except ValueError:
                self.changes["records_unreadable"] += 1
                continue
            found[record.detection_id] = record
            self._image(record, key)
        return found

    def _image(self, record: DetectionRecord, key: str) -> None:
        image_key = self.settings.key("image", record.image_id)
        entry = self.index.get(record.image_id)
        fields = {
            "uri": record.image_uri,
            "source": record.source,
            "submitted_at": f"{record.created_at.timestamp():.3f}",
            "detection_id": record.detection_id,
            "model_version": record.model_version,
            "route": "+".join(record.route.reasons) if record.route.reasons else "none",
            "top_confidence": "" if record.top_confidence is None else f"{record.top_confidence:.2f}",
            "record_uri": self.settings.s3_uri(key),
        }
        missing = {k: v for k, v in fields.items() if k not in entry}
        if entry.get("state") != "detected" or missing:
            pipe = self.redis.pipeline()
            for name, value in missing.items():
                pipe.hsetnx(image_key, name, value)
            pipe.hset(image_key, "state", "detected")
            pipe.zadd(self.settings.key("images"), {record.image_id: record.created_at.timestamp()}, nx=True)
            pipe.expire(image_key, max(1, int(self.settings.retention_days * 86400)))
            pipe.execute()
            self.changes["images_restored" if not entry else "images_completed"] += 1
        if record.loop_name and record.loop_status and entry.get("loop_status") != record.loop_status:
            tail = record.loop_name.rsplit("-r", 1)[1] if "-r" in record.loop_name else ""
            attempt = int(tail) if tail.isdigit() else 0
            if self.status._write(record.image_id, record.loop_name, record.loop_status, record.answer_outcome or "",
                                  attempt):
                self.changes["loop_status_restored"] += 1

    # --- loops -------------------------------------------------------------------------------------
    def _summaries(self) -> Iterator[dict[str, Any]]:
        if not self.settings.flow_definition_arn:
            return
        client = self.client or a2i.client()
        kwargs: dict[str, Any] = {
            "FlowDefinitionArn": self.settings.flow_definition_arn,
            "CreationTimeAfter": datetime.now(UTC) - timedelta(hours=self.settings.reconcile_horizon_hours),
            "SortOrder": "Ascending",
            "MaxResults": 100,
        }
        while True:
            page = client.list_human_loops(**kwargs)
            yield from page.get("HumanLoopSummaries", [])
            if not page.get("NextToken"):
                return
            kwargs["NextToken"] = page["NextToken"]

    def _loops(self, records: dict[str, DetectionRecord]) -> None:
        for summary in self._summaries():
            name, status = str(summary["HumanLoopName"]), str(summary["HumanLoopStatus"])
            stem, _, tail = name.rpartition("-r")
            attempt = int(tail) if stem and tail.isdigit() else 0
            detection_id = stem if stem and tail.isdigit() else name
            record = records.get(detection_id)
            if self.registry.get(name) is None and record is not None:
                created = summary.get("CreationTime")
                started = created.timestamp() if isinstance(created, datetime) else time.time()
                self.redis.hset(
                    self.settings.key("loop", name),
                    mapping={
                        "image_id": record.image_id, "detection_id": record.detection_id,
                        "reasons": ",".join(record.route.reasons), "model_version": record.model_version,
                        "attempt": str(attempt), "status": status, "started_at": f"{started:.3f}",
                    },
                )
                if status not in TERMINAL_STATUSES:
                    self.redis.zadd(self.registry.open_key, {name: started}, nx=True)
                self.changes["loops_restored"] += 1
            if record is not None and status not in TERMINAL_STATUSES:
                self.status.update(record.image_id, name, "InProgress")
            if status == "Completed" and not self.registry.applied(name, status) and self._effect_stored(name, record):
                self.registry.mark_applied(name, status)
                self.changes["applied_marks_restored"] += 1

    def _effect_stored(self, name: str, record: DetectionRecord | None) -> bool:
        """The Completed loop's effects are in S3: its dataset line and/or its audit verdict."""
        s3 = aws.client("s3")
        reasons = set(record.route.reasons) if record else {"low_confidence"}
        keys = []
        if reasons & {"low_confidence", "annotation"}:
            keys.append(self.dataset.line_key(name))
        if "audit" in reasons and record is not None:
            keys.append(f"{self.settings.audits_prefix}{record.model_version}/{name}.json")
        for key in keys:
            try:
                s3.head_object(Bucket=self.settings.bucket, Key=key)
            except s3.exceptions.ClientError:
                return False
        return bool(keys)

    # --- counters ----------------------------------------------------------------------------------
    def _dataset(self) -> None:
        for key in _objects(self.settings, f"{self.dataset.prefix}lines/"):
            if self.redis.sadd(self.dataset.examples_key, key):
                self.redis.sadd(self.dataset.untrained_key, key)
                self.changes["examples_restored"] += 1

    def _audits(self) -> None:
        for key in _objects(self.settings, self.settings.audits_prefix):
            if not key.endswith(".json"):
                continue
            verdict = AuditVerdict(**json.loads(_read(self.settings, key)))
            loops_key = self.settings.key("audit", verdict.model_version, "loops")
            if not self.redis.sismember(loops_key, verdict.loop_name) and self.audits.record(verdict):
                self.changes["audit_verdicts_restored"] += 1

    def _pending(self, records: dict[str, DetectionRecord]) -> None:
        """Routed detections with no loop anywhere: pending, for reconciliation to dispatch."""
        for record in records.values():
            if not record.route.review:
                continue
            entry = self.index.get(record.image_id)
            if entry.get("loop_status") or self.registry.get(loop_name_for(record.detection_id)) is not None:
                continue
            self.status.pending(record.image_id)
            self.changes["dispatches_pending"] += 1
