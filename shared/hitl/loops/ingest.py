"""Apply one human-loop status change, exactly once in effect (idempotent on (loop name, status)).

Completed: output.json → the consolidated answer → a labelled example (low-confidence loops) and/or
an audit verdict (audit loops); never training data from an audit-only loop. Failed, Stopped and
Expired are recorded and counted; an expired low-confidence loop is dispatched again once, under a
deterministic new name. Every effect is idempotent by its own content key, and the (loop, status)
mark is set only after them, so a crash anywhere just repeats harmless work on redelivery.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Literal

from hitl import metrics
from hitl.adapters.records import RecordStore
from hitl.adapters.redis_index import ImageIndex
from hitl.domain.a2i_events import TERMINAL_STATUSES, HumanLoopStatusDetail, parse_event
from hitl.domain.consolidation import Consolidated, consolidate
from hitl.domain.conversion import (
    AnswerError,
    class_map_for,
    classification_line,
    detection_line,
    human_answers,
    input_labels,
    task_object,
)
from hitl.domain.records import LABELLING_REASONS
from hitl.logs import get_logger
from hitl.loops import a2i
from hitl.loops.audit import AuditStore, judge
from hitl.loops.dataset import LabelledDataset
from hitl.loops.output import read_output
from hitl.loops.registry import LoopInfo, LoopRegistry
from hitl.loops.status import LoopStatusWriter
from hitl.settings import Settings

log = get_logger("hitl.ingest")

Applied = Literal["applied", "duplicate", "ignored"]
Redispatch = Callable[[str, str, int], None]
_RETRY_SUFFIX = re.compile(r"-r\d+$")


def celery_redispatch(image_id: str, detection_id: str, attempt: int) -> None:
    from hitl.celery_app import app
    from hitl.detect import DISPATCH_TASK

    app.send_task(
        DISPATCH_TASK,
        kwargs={"image_id": image_id, "detection_id": detection_id, "attempt": attempt, "enqueued_at": time.time()},
        queue="dispatch",
    )


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        *,
        registry: LoopRegistry | None = None,
        dataset: LabelledDataset | None = None,
        audits: AuditStore | None = None,
        records: RecordStore | None = None,
        index: ImageIndex | None = None,
        redispatch: Redispatch = celery_redispatch,
        client: Any = None,
    ) -> None:
        self.settings = settings
        self.registry = registry or LoopRegistry(settings)
        self.dataset = dataset or LabelledDataset(settings)
        self.audits = audits or AuditStore(settings)
        self.records = records or RecordStore(settings)
        self.index = index or ImageIndex(settings)
        self.status = LoopStatusWriter(settings, index=self.index, records=self.records)
        self.redispatch = redispatch
        self.client = client
        metrics.initialise_loop_series()

    # --- entry points -----------------------------------------------------------------------------
    def handle_message(self, message: dict[str, Any]) -> None:
        """SqsConsumer handler: raising leaves the message for redelivery and, at last, the DLQ."""
        self.apply(parse_event(message["Body"]).detail)

    def apply(self, detail: HumanLoopStatusDetail, via: str = "event") -> Applied:
        name, status = detail.human_loop_name, detail.human_loop_status
        bound = log.bind(loop_name=name, status=status, via=via)
        if status not in TERMINAL_STATUSES:
            return "ignored"
        label = "Expired" if detail.expired else status
        if self.registry.applied(name, status):
            metrics.EVENTS_DUPLICATE.labels(label).inc()
            bound.info("event_duplicate")
            return "duplicate"
        info = self.registry.get(name) or self._info_from_name(name)
        if info.status in TERMINAL_STATUSES and info.status != status and self.registry.applied(name, info.status):
            # A late, contradictory event (e.g. Stopped after Completed): the first terminal state stands.
            self.registry.mark_applied(name, status)
            metrics.EVENTS_DUPLICATE.labels(label).inc()
            bound.warning("event_superseded", recorded=info.status)
            return "duplicate"
        bound = bound.bind(image_id=info.image_id, detection_id=info.detection_id)
        if status == "Completed":
            outcome = self._completed(detail, info, bound)
        else:
            outcome = self._ended(detail, info, label, bound)
        if not self.registry.mark_applied(name, status):
            metrics.EVENTS_DUPLICATE.labels(label).inc()  # a concurrent ingestor got there first
            return "duplicate"
        metrics.EVENTS_INGESTED.labels(label).inc()
        # Applied: no longer among the loops reconciliation could not apply (if it ever was).
        self.registry.redis.hdel(self.settings.key("loops", "unappliable"), name)
        if info.started_at is not None:
            metrics.LOOP_DURATION.labels(label).observe(max(0.0, time.time() - info.started_at))
        bound.info("event_applied", outcome=outcome)
        return "applied"

    # --- Completed ----------------------------------------------------------------------------------
    def _completed(self, detail: HumanLoopStatusDetail, info: LoopInfo, bound: Any) -> str:
        uri = detail.output_uri or self._describe(detail.human_loop_name).get("HumanLoopOutput", {}).get("OutputS3Uri")
        if not uri:
            raise AnswerError("no_output_uri", detail.human_loop_name)
        output = read_output(uri)
        raw_content = output.get("inputContent")
        content: dict[str, Any] = raw_content if isinstance(raw_content, dict) else {}
        image_id = info.image_id or content.get("imageId")
        reasons = info.reasons or content.get("routeReasons") or [content.get("routeReason") or "low_confidence"]
        answer = consolidate(human_answers(output))
        outcomes: list[str] = []
        if LABELLING_REASONS & set(reasons):
            outcomes.append(self._label(detail.human_loop_name, output, answer))
        if "audit" in reasons:
            outcomes.append(self._audit(detail.human_loop_name, image_id, answer))
        outcome = "+".join(outcomes) or "recorded"
        self.registry.finish(
            detail.human_loop_name,
            "Completed",
            outcome,
            agreement=f"{answer.agreement:.3f}",
            workers=str(answer.workers),
        )
        if image_id:
            self.status.update(image_id, detail.human_loop_name, "Completed", outcome)
        bound.info("loop_completed", outcome=outcome, agreement=answer.agreement, workers=answer.workers)
        return outcome

    def _label(self, loop_name: str, output: dict[str, Any], answer: Consolidated) -> str:
        source_ref = task_object(output)
        if answer.kind == "boxes":
            if not answer.boxes:
                return "no_objects"
            if answer.image_size is None:
                raise AnswerError("no_image_size", loop_name)
            class_map = class_map_for(input_labels(output), (b["label"] for b in answer.boxes))
            line = detection_line(
                source_ref, loop_name, answer.boxes, answer.image_size, class_map, answer.submission_time,
                self.settings.detection_attribute, confidences=answer.box_support or None,
                consensus=_consensus(answer),
            )
            if self.dataset.add(loop_name, line):
                metrics.LABELS_ADDED.labels("object_detection").inc()
                self._label_added()
            return "labelled"
        if answer.kind == "class":
            if answer.label is None:
                return "no_label"
            class_map = class_map_for(input_labels(output), [answer.label])
            self.dataset.copy_to_label_folder(source_ref, answer.label)
            line = classification_line(
                source_ref, loop_name, answer.label, class_map, answer.submission_time,
                self.settings.classification_attribute, confidence=answer.label_support,
                consensus=_consensus(answer),
            )
            if self.dataset.add(loop_name, line):
                metrics.LABELS_ADDED.labels("classification").inc()
                self._label_added()
            return "labelled"
        return "verified" if answer.kind == "verification" else "no_label"

    def _label_added(self) -> None:
        # Enough new labels: the trainer checks now rather than at its next poll.
        from hitl.training.trigger import on_label_added

        try:
            on_label_added(self.settings, self.dataset.untrained_count())
        except Exception:  # the label is stored; the periodic poll still finds it
            log.warning("training_trigger_failed", exc_info=True)

    def _audit(self, loop_name: str, image_id: str | None, answer: Consolidated) -> str:
        record = self.records.get(image_id) if image_id else None
        if record is None:
            return "audit_unmatched"
        self.audits.record(judge(record, loop_name, answer))
        return "audited"

    # --- Failed / Stopped / Expired --------------------------------------------------------------------
    def _ended(self, detail: HumanLoopStatusDetail, info: LoopInfo, label: str, bound: Any) -> str:
        name = detail.human_loop_name
        retry = (
            detail.expired
            and LABELLING_REASONS & set(info.reasons or ["low_confidence"])
            and info.attempt < self.settings.max_redispatches
            and info.image_id is not None
            and info.detection_id is not None
        )
        outcome = "redispatched" if retry else label.lower()
        self.registry.finish(name, detail.human_loop_status, outcome, failure_code=detail.failure_code or "")
        if info.image_id:
            self.status.update(info.image_id, name, label, outcome)
        if retry and info.image_id and info.detection_id:
            # After the status write: the new loop's dispatch then records its own name last.
            first = not self.registry.applied(name, detail.human_loop_status)
            self.redispatch(info.image_id, info.detection_id, info.attempt + 1)
            if first:
                metrics.LOOPS_REDISPATCHED.inc()
        bound.warning("loop_ended", outcome=outcome, failure_code=detail.failure_code, reason=detail.failure_reason)
        return outcome

    # --- helpers -----------------------------------------------------------------------------------------
    def _describe(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = (self.client or a2i.client()).describe_human_loop(HumanLoopName=name)
        return found

    def _info_from_name(self, name: str) -> LoopInfo:
        """Without the registry entry (a loop started elsewhere, or Redis lost): the image from the name."""
        stem = _RETRY_SUFFIX.sub("", name)
        attempt = int(name.rsplit("-r", 1)[1]) if stem != name else 0
        image_id = None
        if stem.startswith("det-"):
            matches = self.index.find(stem[4:], limit=2)
            image_id = matches[0] if len(matches) == 1 else None
        return LoopInfo(name=name, image_id=image_id, detection_id=stem if image_id else None, attempt=attempt)


def _consensus(answer: Consolidated) -> dict[str, Any] | None:
    """How several reviewers agreed, recorded in the dataset line (nothing for a single reviewer)."""
    if answer.workers < 2:
        return None
    return {"workers": answer.workers, "agreement": round(answer.agreement, 3)}
