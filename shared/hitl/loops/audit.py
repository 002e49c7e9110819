"""Audit verdicts: a human answer judged against the model's prediction, per model version.

Each verdict is an S3 object ``<audits_prefix><model_version>/<loop>.json``; the aggregates that
``hitl audit report`` reads are Redis hashes ``audit:<model_version>:counts`` (tp, fp, fn, agree,
loops), updated atomically with the set ``audit:<model_version>:loops`` so a verdict counts once;
``audit:versions`` lists the model versions. Each audited detection's (label, confidence, right or
not) is appended in the same step to ``audit:<model_version>:scored``, from which the auto-accept
threshold per label is recomputed whenever it is asked for (``hitl.domain.auto_accept``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from hitl import aws, metrics
from hitl.adapters.redis_index import connect
from hitl.domain.audit_stats import AuditCounts
from hitl.domain.auto_accept import AutoAccept, per_label
from hitl.domain.consolidation import Consolidated
from hitl.domain.matching import LabelledBox, MatchResult, match_boxes, match_labels
from hitl.domain.records import DetectionRecord
from hitl.settings import Settings

SCORED_KEPT = 100_000  # audited detections kept per model version for the auto-accept threshold

_COUNT = f"""
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'tp', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'fp', ARGV[3])
redis.call('HINCRBY', KEYS[2], 'fn', ARGV[4])
redis.call('HINCRBY', KEYS[2], 'agree', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'loops', 1)
redis.call('SADD', KEYS[3], ARGV[6])
for i = 7, #ARGV do redis.call('RPUSH', KEYS[4], ARGV[i]) end
redis.call('LTRIM', KEYS[4], -{SCORED_KEPT}, -1)
return 1
"""


@dataclass(frozen=True)
class AuditVerdict:
    loop_name: str
    image_id: str
    detection_id: str
    model_version: str
    task: str
    tp: int
    fp: int
    fn: int
    agrees: bool
    human_agreement: float  # how much the reviewers agreed among themselves
    predicted: list[dict[str, Any]] = field(default_factory=list)
    answered: list[dict[str, Any]] | str | None = None
    pairs: list[tuple[int, int, float]] = field(default_factory=list)


def judge(record: DetectionRecord, loop_name: str, answer: Consolidated) -> AuditVerdict:
    """Match the model's prediction with the (consolidated) human answer: IoU ≥ 0.5 for boxes,
    label equality for image classes, the reviewers' yes/no for label verification."""
    predicted = [label.model_dump(mode="json", include={"label", "confidence", "box_px"}) for label in record.labels]
    answered: list[dict[str, Any]] | str | None
    result: MatchResult
    if answer.kind == "boxes":
        boxes = [
            LabelledBox(x.label, (x.box_px.left, x.box_px.top, x.box_px.width, x.box_px.height))
            for x in record.labels
            if x.box_px is not None
        ]
        truth = [
            LabelledBox(b["label"], (float(b["left"]), float(b["top"]), float(b["width"]), float(b["height"])))
            for b in answer.boxes
        ]
        result = match_boxes(boxes, truth)
        answered = answer.boxes
    elif answer.kind == "verification":
        result = MatchResult()
        for index, label in enumerate(record.labels):
            if answer.verified.get(label.label, False):
                result.pairs.append((index, index, 1.0))
            else:
                result.false_positives.append(index)
        answered = [{"label": k, "verified": v} for k, v in answer.verified.items()]
    else:
        top = max(record.labels, key=lambda x: x.confidence, default=None)
        result = match_labels(top.label if top else None, answer.label)
        answered = answer.label
    return AuditVerdict(
        loop_name=loop_name,
        image_id=record.image_id,
        detection_id=record.detection_id,
        model_version=record.model_version,
        task=answer.kind,
        tp=result.tp,
        fp=result.fp,
        fn=result.fn,
        agrees=result.fp == 0 and result.fn == 0,
        human_agreement=answer.agreement,
        predicted=predicted,
        answered=answered,
        pairs=result.pairs,
    )


def scored_detections(verdict: AuditVerdict) -> list[tuple[str, float, bool]]:
    """Each audited prediction as (label, confidence, right?): a box or label the reviewers confirmed
    is right. For image classes only the top label is judged, so only it counts."""
    matched = {p for p, _, _ in verdict.pairs}
    predicted = [(str(x["label"]), float(x["confidence"])) for x in verdict.predicted]
    if verdict.task in ("boxes", "verification"):
        return [(label, conf, i in matched) for i, (label, conf) in enumerate(predicted)]
    if not predicted:
        return []
    label, conf = max(predicted, key=lambda x: x[1])
    return [(label, conf, verdict.tp > 0)]


class AuditStore:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = client or connect(settings.redis_url)
        self._count = self.redis.register_script(_COUNT)

    def _counts_key(self, model_version: str) -> str:
        return self.settings.key("audit", model_version, "counts")

    def _scored_key(self, model_version: str) -> str:
        return self.settings.key("audit", model_version, "scored")

    def scored(self, model_version: str) -> list[tuple[str, float, bool]]:
        raw: list[str] = self.redis.lrange(self._scored_key(model_version), 0, -1)  # type: ignore[assignment]
        return [(str(a), float(b), bool(c)) for a, b, c in (json.loads(x) for x in raw)]

    def auto_accept(self, model_version: str, target: float) -> dict[str, AutoAccept]:
        """Per label, the auto-accept threshold the audits support for this version (recomputed from
        every audited detection so far)."""
        return per_label(self.scored(model_version), target)

    def record(self, verdict: AuditVerdict) -> bool:
        """Store the verdict, then count it; True only the first time."""
        key = f"{self.settings.audits_prefix}{verdict.model_version}/{verdict.loop_name}.json"
        aws.client("s3").put_object(
            Bucket=self.settings.bucket,
            Key=key,
            Body=json.dumps(asdict(verdict)).encode(),
            ContentType="application/json",
        )
        counted = bool(
            self._count(
                keys=[
                    self.settings.key("audit", verdict.model_version, "loops"),
                    self._counts_key(verdict.model_version),
                    self.settings.key("audit", "versions"),
                    self._scored_key(verdict.model_version),
                ],
                args=[
                    verdict.loop_name, verdict.tp, verdict.fp, verdict.fn, int(verdict.agrees), verdict.model_version,
                    *(json.dumps([label, conf, ok]) for label, conf, ok in scored_detections(verdict)),
                ],
            )
        )
        if counted:
            metrics.AUDIT_VERDICTS.labels(verdict.model_version, "agree" if verdict.agrees else "disagree").inc()
            self.publish(verdict.model_version)
        return counted

    def versions(self) -> list[str]:
        return sorted(self.redis.smembers(self.settings.key("audit", "versions")))  # type: ignore[arg-type]

    def counts(self, model_version: str) -> AuditCounts:
        raw: dict[str, str] = self.redis.hgetall(self._counts_key(model_version))  # type: ignore[assignment]
        return AuditCounts(**{k: int(raw.get(k, 0)) for k in ("tp", "fp", "fn", "agree", "loops")})

    def publish(self, model_version: str) -> None:
        counts = self.counts(model_version)
        precision, recall = counts.precision().value, counts.recall().value
        if precision is not None:
            metrics.AUDIT_PRECISION.labels(model_version).set(precision)
        if recall is not None:
            metrics.AUDIT_RECALL.labels(model_version).set(recall)

    def report(self, target: float | None = None) -> dict[str, dict[str, object]]:
        """Counts per version; with ``target``, also each label's auto-accept threshold."""
        out: dict[str, dict[str, object]] = {}
        for version in self.versions():
            entry = self.counts(version).report()
            if target is not None:
                entry["auto_accept"] = {k: v.as_dict() for k, v in self.auto_accept(version, target).items()}
            out[version] = entry
        return out
