"""Start the human loop of a routed detection, exactly once in effect.

The name comes from the detection id, so a redelivered task restarts nothing: the review service
answers the same start with the same ARN, A2I answers ConflictException, and both mean "already
started". Throttling and quota errors are retried here with exponential backoff and jitter a few
times; what is still refused, and any transient failure (connection refused, timeouts, 5xx, S3
unreadable), is raised, and the task retries it later within its budget (:class:`~hitl.celery_app.PipelineTask`), then
dead-letters it with its reason. One loop serves every reason of a
detection: an audit sample that is also low-confidence reuses the low-confidence loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from hitl import metrics
from hitl.adapters.records import RecordStore
from hitl.domain.budget import BudgetLimits, Waiting
from hitl.domain.records import DetectionRecord
from hitl.logs import get_logger
from hitl.loops import a2i
from hitl.loops.budget import ReviewBudget
from hitl.loops.names import loop_name_for
from hitl.loops.registry import LoopRegistry
from hitl.loops.status import LoopStatusWriter
from hitl.params import ParameterStore
from hitl.settings import Settings
from hitl.transient import TransientFailure

log = get_logger("hitl.dispatch")

Outcome = Literal["started", "already_started", "not_routed", "waiting"]
WAITING_STATUS = "waiting_budget"


class RecordMissing(TransientFailure):
    """The DetectionRecord is not (yet) in S3."""

    def __init__(self, detail: str) -> None:
        super().__init__("record_missing", detail)


class DispatchExhausted(TransientFailure):
    """StartHumanLoop stayed throttled or over quota for every allowed attempt."""

    def __init__(self, detail: str) -> None:
        super().__init__("throttled", detail)


@dataclass(frozen=True)
class DispatchResult:
    loop_name: str
    outcome: Outcome


def input_content(record: DetectionRecord, labels: list[str]) -> dict[str, Any]:
    """The review service's InputContent (services/review/README.md): the image, the model's
    prediction shown prefilled, the choices and why a human is asked; plus ids that make
    output.json self-describing for ingestion."""
    initial: list[dict[str, Any]] = []
    for label in record.labels:
        entry: dict[str, Any] = {"label": label.label, "confidence": round(label.confidence, 2)}
        if label.box_px is not None:
            entry.update(
                left=round(label.box_px.left),
                top=round(label.box_px.top),
                width=round(label.box_px.width),
                height=round(label.box_px.height),
            )
        initial.append(entry)
    content: dict[str, Any] = {
        "taskObject": record.image_uri,
        "initialValue": initial,
        "routeReason": record.route.reasons[0] if record.route.reasons else "low_confidence",
        "routeReasons": list(record.route.reasons),
        "imageId": record.image_id,
        "detectionId": record.detection_id,
        "modelVersion": record.model_version,
    }
    if labels:
        content["labels"] = labels
    if record.route.priority is not None:
        content["priority"] = record.route.priority
    return content


def _throttled(exc: BaseException) -> bool:
    # Only throttling is waited out here (briefly); an outage goes back to the queue at once, as a
    # task retry with a longer backoff, so it does not hold a worker.
    return a2i.error_code(exc) in a2i.THROTTLING_ERRORS


def _count_throttle(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    metrics.LOOP_THROTTLES.labels(a2i.error_code(exc) if exc else "unknown").inc()


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        client: Any = None,
        records: RecordStore | None = None,
        registry: LoopRegistry | None = None,
        status: LoopStatusWriter | None = None,
        params: ParameterStore | None = None,
        budget: ReviewBudget | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.records = records or RecordStore(settings)
        self.registry = registry or LoopRegistry(settings)
        self.status = status or LoopStatusWriter(settings, records=self.records)
        self.params = params or ParameterStore(settings)
        self.budget = budget or ReviewBudget(settings, self.registry.redis)

    def labels_for(self, record: DetectionRecord) -> list[str]:
        if self.settings.loop_labels:
            return list(self.settings.loop_labels)
        return list(dict.fromkeys(label.label for label in record.labels))

    def dispatch(self, image_id: str, detection_id: str, attempt: int = 0) -> DispatchResult:
        name = loop_name_for(detection_id, attempt)
        bound = log.bind(image_id=image_id, detection_id=detection_id, loop_name=name)
        record = self.records.get(image_id)
        if record is None:
            raise RecordMissing(f"no DetectionRecord for {image_id}")
        if not record.route.review:
            bound.warning("dispatch_not_routed")
            return DispatchResult(name, "not_routed")
        known = self.registry.get(name)
        if known is not None and known.started_at is not None:
            # A redelivered task: the loop exists and is registered; nothing to call. The status
            # write is forward-only, so it completes a crashed dispatch and never reopens a loop.
            self.status.update(image_id, name, known.status or "InProgress", known.outcome or "")
            bound.info("loop_already_started", status=known.status)
            return DispatchResult(name, "already_started")

        snapshot = self.params.snapshot()
        limits = BudgetLimits(snapshot.max_reviews_per_hour, snapshot.max_open_loops)
        if not self.budget.reserve(name, limits):
            # Over budget: the image waits with its detection, its status says why, and the release
            # task sends it again, ranked among the others, when a slot frees up.
            route = record.route
            self.budget.wait(
                Waiting(image_id, detection_id, attempt, route.priority, self.budget.clock(), "audit" in route.reasons)
            )
            self.status.update(image_id, name, WAITING_STATUS)
            metrics.LOOPS_WAITING_BUDGET.inc()
            bound.info("dispatch_waiting_budget", per_hour=limits.per_hour, max_open=limits.max_open)
            return DispatchResult(name, "waiting")
        self.budget.unwait(image_id)
        content = input_content(record, self.labels_for(record))
        already = self._start(name, content, bound)
        first = self.registry.register(
            name, image_id, detection_id, list(record.route.reasons), record.model_version, attempt
        )
        if first:
            for reason in record.route.reasons:
                metrics.LOOPS_STARTED.labels(reason).inc()
        self.status.update(image_id, name, "InProgress")
        outcome: Outcome = "started" if first and not already else "already_started"
        bound.info("loop_dispatched", outcome=outcome, reasons=record.route.reasons, attempt=attempt)
        return DispatchResult(name, outcome)

    def _start(self, name: str, content: dict[str, Any], bound: Any) -> bool:
        """StartHumanLoop with the throttling policy; True when the loop already existed."""
        client = self.client or a2i.client()
        retrying = Retrying(
            retry=retry_if_exception(_throttled),
            wait=wait_exponential_jitter(
                multiplier=self.settings.dispatch_backoff_initial, max=self.settings.dispatch_backoff_max
            ),
            stop=stop_after_attempt(self.settings.dispatch_max_attempts),
            before_sleep=_count_throttle,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    client.start_human_loop(
                        HumanLoopName=name,
                        FlowDefinitionArn=self.settings.flow_definition_arn,
                        HumanLoopInput={"InputContent": json.dumps(content, separators=(",", ":"), sort_keys=True)},
                    )
        except ClientError as exc:
            code = a2i.error_code(exc)
            if code == "ConflictException":
                metrics.LOOP_CONFLICTS.inc()
                bound.info("loop_conflict_already_started")
                return True
            if code in a2i.THROTTLING_ERRORS:
                metrics.LOOP_THROTTLES.labels(code or "unknown").inc()
                raise DispatchExhausted(f"{code} after {self.settings.dispatch_max_attempts} attempts") from exc
            raise
        return False


def release_waiting(dispatcher: Dispatcher, send: Any, now: float | None = None) -> list[str]:
    """Send the best waiting images to dispatch, as many as the budget has slots for (all of them
    when nothing limits). ``send(image_id, detection_id, attempt)`` queues one dispatch. Returns the
    image ids sent; a dispatch that finds the budget spent again puts its image back to wait."""
    from hitl.domain.budget import rank

    waiting = dispatcher.budget.waiting()
    if not waiting:
        return []
    snapshot = dispatcher.params.snapshot()
    limits = BudgetLimits(snapshot.max_reviews_per_hour, snapshot.max_open_loops)
    free = dispatcher.budget.free(limits, now)
    chosen = rank(waiting, snapshot.routing_strategy)[: len(waiting) if free is None else free]
    for entry in chosen:
        send(entry.image_id, entry.detection_id, entry.attempt)
    if chosen:
        log.info("waiting_released", sent=len(chosen), waiting=len(waiting), free=free)
    return [entry.image_id for entry in chosen]
