"""Training notices on EventBridge (the reference solution sent them by SNS): started, completed,
failed, rejected, deployed. A rule routes them to the notifications queue, and each is counted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from hitl import aws, metrics
from hitl.logs import get_logger
from hitl.settings import Settings

Stage = Literal["started", "completed", "failed", "rejected", "deployed", "skipped"]
DETAIL_TYPE = "HITL Model Training"

log = get_logger("hitl.training")


def publish(settings: Settings, stage: Stage, **detail: Any) -> None:
    body = {"stage": stage, "at": datetime.now(UTC).isoformat(), **detail}
    if stage in ("failed", "rejected", "deployed", "skipped"):
        outcome = {"deployed": "promoted"}.get(stage, stage)
        metrics.TRAINING_RUNS.labels(outcome).inc()
    try:
        response = aws.client("events").put_events(
            Entries=[
                {
                    "Source": settings.training_event_source,
                    "DetailType": DETAIL_TYPE,
                    "Detail": json.dumps(body, default=str),
                    "EventBusName": settings.event_bus,
                }
            ]
        )
        if response.get("FailedEntryCount"):
            log.warning("training_notice_not_accepted", stage=stage, response=response.get("Entries"))
    except Exception:
        log.exception("training_notice_failed", stage=stage)
    log.info("training_notice", stage=stage, **detail)
