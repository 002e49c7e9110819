"""The review service's operations: the five A2I runtime calls, the reviewer's task flow, the sweeper.

Synchronous and framework-free; the HTTP layer runs these in a thread pool. Ordering guarantees:
an answer is stored before it is acknowledged; output.json is written before the loop becomes
Completed; the status-change event is queued in the same Redis transaction as the status change and
sent by :meth:`ReviewService.drain_outbox` until EventBridge accepts it (at least once).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hitl.logs import get_logger
from hitl.review import (
    answers,
    assignment,
    events,
    flow_requests,
    inputs,
    output,
    pagination,
    timefmt,
    validation,
)
from hitl.review.errors import (
    ConflictError,
    NotFoundError,
    PortalError,
    QuotaExceededError,
    ValidationError,
)
from hitl.review.flow_registry import FlowRegistry
from hitl.review.flows import FlowDefinition
from hitl.review.loops import EVENT_STATUSES, HumanLoop, Status
from hitl.review.publisher import Publisher
from hitl.review.store import Change, LoopStore

log = get_logger()
QUEUE_SCAN_LIMIT = 500
OUTBOX_BATCH = 10  # PutEvents accepts at most 10 entries
OUTBOX_CLAIM_TIMEOUT_MS = 300_000  # above botocore's connect + read timeouts of one PutEvents call


@dataclass(frozen=True)
class ServiceConfig:
    region: str
    account: str
    event_source: str
    event_bus: str
    image_buckets: frozenset[str]
    max_input_chars: int = 3_145_728
    max_open_loops: int = 100_000
    max_image_bytes: int = 15 * 1024 * 1024
    stop_delay_seconds: float = 0.0
    issuer: str = "hitl-review"
    retention_seconds: float = 30 * 86400.0  # ended loops are deleted this long after creation
    image_prefixes: tuple[str, ...] = ()  # empty: any key outside excluded_prefixes
    excluded_prefixes: tuple[str, ...] = ()
    max_json_depth: int = 32
    # S3OutputPath of a flow created through the admin API without one.
    default_output_path: str = ""

    def image_keys(self) -> inputs.ImageKeys:
        return inputs.ImageKeys(self.image_buckets, self.image_prefixes, self.excluded_prefixes)


@dataclass
class SweepReport:
    completed: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    events_sent: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class TaskView:
    """What the portal shows a reviewer for one task."""

    name: str
    task_type: str
    title: str
    description: str
    labels: list[str]
    initial_value: Any
    route_reason: str | None
    accepted_at: str
    time_limit_seconds: int
    verify_labels: list[str]
    instructions: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "taskType": self.task_type,
            "title": self.title,
            "description": self.description,
            "labels": self.labels,
            "initialValue": self.initial_value,
            "routeReason": self.route_reason,
            "acceptedAt": self.accepted_at,
            "timeLimitSeconds": self.time_limit_seconds,
            "verifyLabels": self.verify_labels,
            "instructions": self.instructions,
            "imageUrl": f"/portal/api/tasks/{self.name}/image",
        }


class ReviewService:
    def __init__(
        self,
        store: LoopStore,
        publisher: Publisher,
        config: ServiceConfig,
        *,
        clock: Callable[[], datetime] = timefmt.now,
        on_event: Callable[[str], None] = lambda status: None,
        on_answer: Callable[[str, float], None] = lambda reviewer, seconds: None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.config = config
        self.clock = clock
        self._on_event = on_event
        self._on_answer = on_answer
        self.flows = FlowRegistry(store.r, store.k, config.region, config.account, clock)

    # --- flow definitions ----------------------------------------------------------------------
    def register_flow(self, flow: FlowDefinition) -> str:
        """Register a configured flow: written now, and again whenever it goes missing."""
        return self.flows.seed([flow])[0]

    def current_flow(self, loop: HumanLoop) -> FlowDefinition:
        """The loop's snapshot with labels, texts and teams as its flow defines them now."""
        return loop.flow.presented_as(self.flows.get(loop.flow_arn))

    def create_flow(self, body: Mapping[str, Any]) -> dict[str, Any]:
        flow = flow_requests.for_create(body, self.config.default_output_path)
        arn, _ = self.flows.create(flow)
        return {"FlowDefinitionArn": arn}

    def update_flow(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A partial update (any definition field, ``AddLabels``, ``RemoveLabels``, ``ExpectedVersion``)."""
        if not isinstance(body, Mapping):
            raise ValidationError("The request body must be a JSON object")
        fields = dict(body)
        expected = flow_requests.expected_version(fields.pop("ExpectedVersion", None))
        flow_requests.flatten(fields, extra=flow_requests.LABEL_EDITS)  # unknown fields: 400 before any read
        self.flows.update(name, lambda current: flow_requests.updated(current, fields), expected)
        return self.flows.describe(name)

    def describe_flow(self, name: str) -> dict[str, Any]:
        return self.flows.describe(name)

    def list_flows(self, params: Mapping[str, str]) -> dict[str, Any]:
        return self.flows.list_page(params)

    # --- A2I runtime API -------------------------------------------------------------------------
    def start(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = validation.loop_name(body.get("HumanLoopName"))
        flow_arn = validation.flow_definition_arn(body.get("FlowDefinitionArn"))
        loop_input = body.get("HumanLoopInput")
        if not isinstance(loop_input, dict):
            raise ValidationError("HumanLoopInput is required")
        raw = loop_input.get("InputContent")
        classifiers = validation.content_classifiers(body.get("DataAttributes"))
        flow = self.flows.get(flow_arn)
        if flow is None:
            raise ValidationError(f"Flow definition {flow_arn} does not exist")
        inputs.parse(raw, self.config.max_input_chars, self.config.image_keys(), self.config.max_json_depth)
        assert isinstance(raw, str)
        loop = HumanLoop(
            name=name,
            arn=validation.loop_arn(self.config.region, self.config.account, name),
            flow_arn=flow_arn,
            flow=flow,
            input_content=raw,
            data_attributes=classifiers,
            creation_time=self.clock(),
        )

        def check_quota() -> None:
            if self.store.open_count() >= self.config.max_open_loops:
                raise QuotaExceededError("The number of InProgress human loops is at the account quota")
            if flow.max_open_loops is not None and self.store.open_count(flow_arn) >= flow.max_open_loops:
                raise QuotaExceededError(f"Flow definition {flow_arn} has its maximum of InProgress loops")

        existing = self.store.create(loop, check_quota)
        if existing is not None:
            if existing.same_request(flow_arn, raw):
                return {"HumanLoopArn": existing.arn}  # a retried start of the same loop
            raise ConflictError(f"A human loop named {name} already exists with a different input")
        log.info("loop_started", loop_name=name, flow_definition_arn=flow_arn)
        return {"HumanLoopArn": loop.arn}

    def _get(self, name: object) -> HumanLoop:
        loop = self.store.get(validation.loop_name(name))
        if loop is None:
            raise NotFoundError(f"Human loop {name} does not exist")
        return loop

    def describe(self, name: str) -> dict[str, Any]:
        return self._get(name).describe()

    def list_loops(self, params: Mapping[str, str]) -> dict[str, Any]:
        flow_arn = validation.flow_definition_arn(params.get("FlowDefinitionArn"))
        limit = validation.max_results(params.get("MaxResults"))
        order = validation.sort_order(params.get("SortOrder"))
        low, high = validation.creation_time_bounds(params)
        if self.flows.get(flow_arn) is None:
            raise NotFoundError(f"Flow definition {flow_arn} does not exist")
        query = pagination.fingerprint(
            flow_arn, order, params.get("CreationTimeAfter"), params.get("CreationTimeBefore")
        )
        token = params.get("NextToken")
        cursor = pagination.decode(token, query) if token else None
        names, next_cursor = self.store.page(
            flow_arn=flow_arn, low_ms=low, high_ms=high, ascending=order == "Ascending", cursor=cursor, limit=limit
        )
        loops = {loop.name: loop for loop in self.store.get_many(names)}
        result: dict[str, Any] = {"HumanLoopSummaries": [loops[n].summary() for n in names if n in loops]}
        if next_cursor is not None:
            result["NextToken"] = pagination.encode(next_cursor, query)
        return result

    def stop(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = validation.loop_name(body.get("HumanLoopName"))
        now = self.clock()

        def apply(loop: HumanLoop) -> Change:
            return Change(loop if loop.request_stop(now) else None, [])

        self.store.mutate(name, apply, self._missing(name))
        log.info("loop_stop_requested", loop_name=name)
        return {}

    def delete(self, name: str) -> dict[str, Any]:
        loop = self._get(name)
        loop.check_deletable()
        self.store.delete(loop)
        log.info("loop_deleted", loop_name=name)
        return {}

    @staticmethod
    def _missing(name: str) -> Callable[[], Change]:
        def missing() -> Change:
            raise NotFoundError(f"Human loop {name} does not exist")

        return missing

    # --- reviewer portal -------------------------------------------------------------------------
    def _check_team(self, loop: HumanLoop, teams: list[str]) -> None:
        """Teams as the flow names them now (a started loop follows its flow's team changes)."""
        if not self.current_flow(loop).allows(teams):
            raise PortalError(403, "This task belongs to another team")

    def queue(self, reviewer: str, teams: list[str]) -> list[dict[str, Any]]:
        now = self.clock()
        found = []
        current: dict[str, FlowDefinition | None] = {}  # each flow read once per listing
        for loop in self.store.get_many(self.store.open_names(QUEUE_SCAN_LIMIT)):
            if assignment.can_offer(loop, reviewer, now):
                if loop.flow_arn not in current:
                    current[loop.flow_arn] = self.flows.get(loop.flow_arn)
                flow = loop.flow.presented_as(current[loop.flow_arn])
                if not flow.allows(teams):
                    continue
                document = loop.input_document
                found.append(
                    {
                        "priority": inputs.task_priority(document),
                        "name": loop.name,
                        "taskType": flow.task_type,
                        "title": flow.task_title,
                        "taskObject": document.get("taskObject"),
                        "routeReason": document.get("routeReason"),
                        "createdAt": timefmt.iso(loop.creation_time),
                        "expiresAt": timefmt.iso(loop.deadline),
                    }
                )
        # Highest priority first (InputContent.priority); the scan is oldest first and the sort is
        # stable, so equal priorities, and loops without one, stay oldest first.
        found.sort(key=lambda task: -inputs.task_priority(task))
        return found

    def open_task(self, reviewer: str, name: str, teams: list[str]) -> TaskView:
        now = self.clock()
        accepted: list[datetime] = []

        def apply(loop: HumanLoop) -> Change:
            self._check_team(loop, teams)
            accepted.append(assignment.claim(loop, reviewer, now))
            return Change(loop, [])

        change = self.store.mutate(name, apply, self._gone)
        assert change.loop is not None
        loop = change.loop
        flow = self.current_flow(loop)
        document = loop.input_document
        return TaskView(
            name=loop.name,
            task_type=flow.task_type,
            title=flow.task_title,
            description=flow.task_description,
            labels=inputs.task_labels(flow, document),
            initial_value=document.get("initialValue"),
            route_reason=document.get("routeReason"),
            accepted_at=timefmt.iso(accepted[-1]),
            time_limit_seconds=flow.task_time_limit_in_seconds,
            verify_labels=answers.verification_targets(document.get("initialValue")),
            instructions=flow.instructions,
        )

    @staticmethod
    def _gone() -> Change:
        raise PortalError(404, "This task does not exist")

    def task_image(self, reviewer: str, name: str, teams: list[str]) -> tuple[bytes, str]:
        """The image of a task the reviewer currently holds, from an allowed bucket and prefix only,
        and only when it is a raster image (PNG, JPEG, GIF, WebP) by its own bytes."""
        loop = self.store.get(name)
        now = self.clock()
        if (
            loop is None
            or loop.status is not Status.IN_PROGRESS
            or not assignment.holds_claim(loop, reviewer, now)
        ):
            raise PortalError(404, "No such task in your hands")
        self._check_team(loop, teams)
        try:
            task = inputs.parse(
                loop.input_content, len(loop.input_content), self.config.image_keys(), self.config.max_json_depth
            )
        except ValidationError as error:
            raise PortalError(403, f"The task's image is not served: {error.message}") from None
        body, _ = self.publisher.get_image(task.bucket, task.key, self.config.max_image_bytes)
        kind = inputs.raster_type(body)
        if kind is None:
            raise PortalError(415, "The task's image is not a PNG, JPEG, GIF or WebP image")
        return body, kind

    def submit(self, reviewer: str, name: str, content: object, teams: list[str]) -> None:
        now = self.clock()
        recorded: list[float] = []

        def apply(loop: HumanLoop) -> Change:
            flow = self.current_flow(loop)
            if not flow.allows(teams):
                raise PortalError(403, "This task belongs to another team")
            labels = inputs.task_labels(flow, loop.input_document)
            asked = answers.verification_targets(loop.input_document.get("initialValue")) or labels
            normalised = answers.validate(loop.flow.task_type, content, labels, asked)
            recorded.append(assignment.record_answer(loop, reviewer, normalised, now).seconds)
            return Change(loop, [])

        change = self.store.mutate(name, apply, self._gone)
        assert change.loop is not None
        self.store.record_answer(reviewer, recorded[-1])
        self._on_answer(reviewer, recorded[-1])
        log.info("answer_recorded", loop_name=name, reviewer=reviewer, seconds=recorded[-1])
        if change.loop.completing:
            try:
                self.finalize(name)
                self.drain_outbox()
            except Exception:
                log.exception("finalize_deferred", loop_name=name)

    def skip(self, reviewer: str, name: str, teams: list[str]) -> None:
        def apply(loop: HumanLoop) -> Change:
            self._check_team(loop, teams)
            assignment.skip(loop, reviewer)
            return Change(loop, [])

        self.store.mutate(name, apply, self._gone)
        log.info("task_skipped", loop_name=name, reviewer=reviewer)

    # --- background work ----------------------------------------------------------------------
    def _event(self, loop: HumanLoop) -> dict[str, Any]:
        return events.entry(loop, self.config.event_source, self.config.event_bus, self.clock())

    def finalize(self, name: str) -> bool:
        """Write output.json for a loop whose answers are all in, then mark it Completed."""
        loop = self.store.get(name)
        if loop is None or loop.status is not Status.IN_PROGRESS or not loop.completing:
            return False
        # Deterministic content: a retry after a crash rewrites the same object.
        self.publisher.write_output(loop.output_uri, output.build(loop, self.config.issuer))

        def apply(current: HumanLoop) -> Change:
            if not current.complete():
                return Change(None, [])
            return Change(current, [self._event(current)])

        change = self.store.mutate(name, apply, lambda: Change(None, []))
        if change.loop is not None:
            log.info("loop_completed", loop_name=name, output_uri=change.loop.output_uri)
            return True
        return False

    def _transition(self, name: str, step: Callable[[HumanLoop], bool]) -> bool:
        def apply(loop: HumanLoop) -> Change:
            if not step(loop):
                return Change(None, [])
            return Change(loop, [self._event(loop)] if loop.status in EVENT_STATUSES else [])

        change = self.store.mutate(name, apply, lambda: Change(None, []))
        return change.loop is not None

    def sweep(self) -> SweepReport:
        now = self.clock()
        report = SweepReport()
        try:
            self.flows.ensure_seeded()
        except Exception:
            log.exception("flow_definitions_reseed_failed")
        for name in self.store.completing():
            try:
                if self.finalize(name):
                    report.completed.append(name)
            except Exception:
                log.exception("finalize_failed", loop_name=name)
        stop_before = now - timedelta(seconds=self.config.stop_delay_seconds)
        for name in self.store.due("stopping", stop_before):
            if self._transition(name, lambda loop: loop.finish_stop()):
                report.stopped.append(name)
                log.info("loop_stopped", loop_name=name)
        for name in self.store.due("deadlines", now):
            if self._transition(name, lambda loop: loop.expire(now)):
                report.expired.append(name)
                log.info("loop_expired", loop_name=name)
        report.events_sent = self.drain_outbox()
        report.deleted = self.purge_ended(now)
        return report

    def purge_ended(self, now: datetime, limit: int = 100) -> int:
        """Retention: ended loops older than ``retention_seconds`` leave Redis (their output.json
        and events are in S3 and the ingestor's records)."""
        before = timefmt.epoch_ms(now - timedelta(seconds=self.config.retention_seconds))
        old = self.store.ended_before(before, limit)
        for loop in old:
            self.store.delete(loop)
        if old:
            log.info("loops_purged", count=len(old))
        return len(old)

    def drain_outbox(self) -> int:
        """Send queued status-change events until the outbox is empty or EventBridge fails.

        Each batch is claimed (moved out of the outbox atomically) before it is sent, so replicas
        draining at once never send the same event twice nor trim one another's unsent events. A
        failed send gives its claim back; a claim whose sender died is given back after
        ``OUTBOX_CLAIM_TIMEOUT_MS`` (longer than any PutEvents call), the one case where an event
        may be sent twice (at least once; the ingestor applies each (loop, status) once).
        """
        sent = 0
        self.store.outbox_recover(OUTBOX_CLAIM_TIMEOUT_MS)
        while True:
            claim, batch = self.store.outbox_claim(OUTBOX_BATCH)
            if not batch:
                break
            try:
                failed = self.publisher.put_events([events.to_put_events(e) for e in batch])
            except Exception:
                log.exception("events_put_failed", pending=len(batch))
                self.store.outbox_unclaim(claim)
                break
            retry = [batch[i] for i in failed]
            self.store.outbox_sent(claim, retry)
            for i, entry in enumerate(batch):
                if i not in failed:
                    sent += 1
                    self._on_event(_status_of(entry))
            if retry:
                log.warning("events_rejected", count=len(retry))
                break
        return sent

    # --- operator ------------------------------------------------------------------------------
    def overview(self, recent: int = 50) -> dict[str, Any]:
        stats = self.store.reviewer_stats()
        return {
            "counts": self.store.status_counts(),
            "reviewers": [
                {"name": who, "answers": n, "mean_seconds": round(total / n, 1) if n else 0.0}
                for who, (n, total) in sorted(stats.items())
            ],
            "recent": self.store.recent(recent),
            "outbox": self.store.outbox_length(),
            "generated_at": timefmt.iso(self.clock()),
        }


def _status_of(entry: Mapping[str, Any]) -> str:
    status: str = json.loads(entry["Detail"]).get("humanLoopStatus", "")
    return status
