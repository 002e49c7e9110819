"""Reconciliation: what events missed, the A2I API still knows.

1. ListHumanLoops (the flow definition, a recent window): a finished loop whose (name, status) was
   never applied is described and applied as if its event had arrived.
2. Loops the registry still holds open past a minimum age are described: finished ones are
   applied, unknown ones (deleted) are closed as ``missing``.
Both go through :class:`~hitl.loops.ingest.Ingestor`, so a loop reconciled while its event arrives
is still applied once. A Redis lock keeps overlapping runs (beat, replicas) from doing the work twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from hitl import metrics
from hitl.domain.a2i_events import TERMINAL_STATUSES, HumanLoopStatusDetail
from hitl.logs import get_logger
from hitl.loops import a2i
from hitl.loops.ingest import Ingestor
from hitl.loops.registry import LoopRegistry
from hitl.settings import Settings

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
            self._finished_loops(counts)
            self._open_loops(counts)
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
            detail = detail_from_description(self.a2i.describe_human_loop(HumanLoopName=name))
            if self.ingestor.apply(detail, via="reconcile") == "applied":
                counts["ingested"] += 1

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
            detail = detail_from_description(found)
            if detail.human_loop_status not in TERMINAL_STATUSES:
                counts["open"] += 1
                continue
            if self.ingestor.apply(detail, via="reconcile") == "applied":
                counts["repaired"] += 1
            elif self.registry.applied(name, detail.human_loop_status):
                # Applied, yet still listed open (e.g. the registry write was lost): close it.
                self.registry.finish(name, detail.human_loop_status, self.registry.get(name).outcome or "")  # type: ignore[union-attr]
