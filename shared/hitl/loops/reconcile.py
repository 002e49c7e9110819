"""Reconciliation: what events missed, the A2I API still knows.

1. ListHumanLoops (the flow definition, a recent window): a finished loop whose (name, status) was
   never applied is described and applied as if its event had arrived.
2. Loops the registry still holds open past a minimum age are described: finished ones are
   applied, unknown ones (deleted) are closed as ``missing``.
3. Routed detections still ``dispatch_pending`` past ``dispatch_pending_seconds`` whose loop is not
   registered are dispatched again (a dispatch message lost in a crash or a Redis restart).
Both go through :class:`~hitl.loops.ingest.Ingestor`, so a loop reconciled while its event arrives
is still applied once. A Redis lock keeps overlapping runs (beat, replicas) from doing the work twice.
A loop that cannot be applied (an unconvertible output, AccessDenied) is recorded with its reason in
``loops:unappliable``, counted once, and skipped: the scan goes on, and it is tried again next run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from celery.exceptions import SoftTimeLimitExceeded

from hitl import metrics
from hitl.domain.a2i_events import TERMINAL_STATUSES, HumanLoopStatusDetail
from hitl.logs import get_logger
from hitl.loops import a2i
from hitl.loops.ingest import Ingestor
from hitl.loops.names import loop_name_for
from hitl.loops.registry import LoopRegistry
from hitl.loops.status import LoopStatusWriter
from hitl.settings import Settings
from hitl.transient import is_transient, reason_of

log = get_logger("hitl.reconcile")


def detail_from_description(found: dict[str, Any]) -> HumanLoopStatusDetail:
    """DescribeHumanLoop's answer in the event's shape."""
    output = found.get("HumanLoopOutput") or {}
    return HumanLoopStatusDetail.model_validate(
        {
            "humanLoopName": found["HumanLoopName"],
            "humanLoopStatus": found["HumanLoopStatus"],
            "humanLoopArn": found.get("HumanLoopArn"),
            "flowDefinitionArn": found.get("FlowDefinitionArn"),
            "creationTime": found.get("CreationTime"),
            "failureCode": found.get("FailureCode"),
            "failureReason": found.get("FailureReason"),
            "humanLoopOutput": {"outputS3Uri": output["OutputS3Uri"]} if output.get("OutputS3Uri") else None,
        }
    )


class Reconciler:
    def __init__(
        self, settings: Settings, ingestor: Ingestor, registry: LoopRegistry | None = None, client: Any = None
    ) -> None:
        self.settings = settings
        self.ingestor = ingestor
        self.registry = registry or ingestor.registry
        self.client = client

    @property
    def a2i(self) -> Any:
        return self.client or a2i.client()

    def run(self) -> dict[str, int]:
        lock = self.registry.redis.lock(self.settings.key("lock", "reconcile"), timeout=600, blocking=False)
        if not lock.acquire():
            return {"skipped": 1}
        try:
            counts = Counter[str]()
            self._clear_applied()
            self._finished_loops(counts)
            self._open_loops(counts)
            self._pending_dispatches(counts)
        finally:
            lock.release()
        for action, n in counts.items():
            metrics.LOOPS_RECONCILED.labels(action).inc(n)
        log.info("reconciled", **counts)
        return dict(counts)

    def _summaries(self) -> Iterator[dict[str, Any]]:
        after = datetime.now(UTC) - timedelta(hours=self.settings.reconcile_horizon_hours)
        kwargs: dict[str, Any] = {
            "FlowDefinitionArn": self.settings.flow_definition_arn,
            "CreationTimeAfter": after,
            "SortOrder": "Ascending",
            "MaxResults": 100,
        }
        while True:
            page = self.a2i.list_human_loops(**kwargs)
            yield from page.get("HumanLoopSummaries", [])
            if not page.get("NextToken"):
                return
            kwargs["NextToken"] = page["NextToken"]

    def _finished_loops(self, counts: Counter[str]) -> None:
        if not self.settings.flow_definition_arn:
            return
        for summary in self._summaries():
            name, status = summary["HumanLoopName"], summary["HumanLoopStatus"]
            if status not in TERMINAL_STATUSES or self.registry.applied(name, status):
                continue
            try:
                detail = detail_from_description(self.a2i.describe_human_loop(HumanLoopName=name))
                if self.ingestor.apply(detail, via="reconcile") == "applied":
                    counts["ingested"] += 1
                    self._applied(name)
            except Exception as exc:  # noqa: BLE001 - one poison loop must not stop the scan
                self._unappliable(name, exc, counts)

    def _open_loops(self, counts: Counter[str]) -> None:
        for name in self.registry.open_loops(time.time() - self.settings.reconcile_min_age_seconds):
            try:
                found = self.a2i.describe_human_loop(HumanLoopName=name)
            except ClientError as exc:
                if a2i.error_code(exc) != "ResourceNotFoundException":
                    raise
                self.registry.finish(name, "Missing", "missing")
                counts["missing"] += 1
                continue
            try:
                detail = detail_from_description(found)
                if detail.human_loop_status not in TERMINAL_STATUSES:
                    counts["open"] += 1
                    continue
                if self.ingestor.apply(detail, via="reconcile") == "applied":
                    counts["repaired"] += 1
                    self._applied(name)
                elif self.registry.applied(name, detail.human_loop_status):
                    # Applied, yet still listed open (e.g. the registry write was lost): close it.
                    known = self.registry.get(name)
                    self.registry.finish(name, detail.human_loop_status, (known.outcome if known else "") or "")
            except Exception as exc:  # noqa: BLE001 - one poison loop must not stop the scan
                self._unappliable(name, exc, counts)

    # --- poison loops --------------------------------------------------------------------------
    @property
    def unappliable_key(self) -> str:
        return self.settings.key("loops", "unappliable")

    def _unappliable(self, name: str, exc: Exception, counts: Counter[str]) -> None:
        if isinstance(exc, SoftTimeLimitExceeded):
            raise exc  # the run is out of time, the loop is not at fault
        reason = reason_of(exc)
        if is_transient(exc):
            # S3, the A2I API or Redis unavailable: not the loop's fault; the next run tries again.
            counts["transient"] += 1
            log.warning("loop_apply_deferred", loop_name=name, reason=reason, error=str(exc)[:300])
            return
        first = self.registry.redis.hsetnx(self.unappliable_key, name, reason)
        if first:
            metrics.LOOPS_POISONED.labels(reason).inc()
        else:
            self.registry.redis.hset(self.unappliable_key, name, reason)
        counts["unappliable"] += 1
        log.error("loop_unappliable", loop_name=name, reason=reason, error=str(exc)[:500])

    def _applied(self, name: str) -> None:
        self.registry.redis.hdel(self.unappliable_key, name)

    def _clear_applied(self) -> None:
        """Loops once recorded as unappliable that were applied since (by an event, or by hand)."""
        for name in self.unappliable():
            info = self.registry.get(name)
            statuses = {info.status} if info is not None and info.status else set(TERMINAL_STATUSES)
            if any(self.registry.applied(name, status) for status in statuses):
                self._applied(name)

    def unappliable(self) -> dict[str, str]:
        return dict(self.registry.redis.hgetall(self.unappliable_key))  # type: ignore[arg-type]

    # --- routed detections with no loop -------------------------------------------------------------
    def _pending_dispatches(self, counts: Counter[str]) -> None:
        from hitl.loops.ingest import celery_redispatch

        status = LoopStatusWriter(self.settings, index=self.ingestor.index, records=self.ingestor.records)
        redis = self.registry.redis
        now = time.time()
        seen: set[str] = set()
        while True:
            # Every entry handled leaves the window (removed, or re-scored to now): page from the start.
            due = [
                str(m) for m in redis.zrangebyscore(  # type: ignore[union-attr]
                    status.pending_key, "-inf", now - self.settings.dispatch_pending_seconds, start=0, num=500
                )
                if str(m) not in seen
            ]
            if not due:
                return
            seen.update(due)
            for image_id in due:
                entry = self.ingestor.index.get(image_id)
                loop_status = entry.get("loop_status")
                detection_id = entry.get("detection_id")
                if not entry or loop_status not in ("dispatch_pending", None) or not detection_id:
                    # Started, ended or dead-lettered (dead letters are redriven by people, not here).
                    redis.zrem(status.pending_key, image_id)
                    continue
                known = self.registry.get(loop_name_for(detection_id))
                if known is not None and known.started_at is not None:
                    status.update(image_id, known.name, known.status or "InProgress", known.outcome or "")
                    continue
                redis.zadd(status.pending_key, {image_id: now})
                celery_redispatch(image_id, detection_id, 0)
                counts["dispatched"] += 1
                log.warning("pending_dispatch_resent", image_id=image_id, detection_id=detection_id)
