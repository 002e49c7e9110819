"""The auto-accept threshold per label, from audit verdicts stored in the real Redis and moto's S3,
as ``hitl audit report`` shows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

from hitl import aws
from hitl.loops.audit import AuditStore, AuditVerdict, scored_detections
from hitl.settings import Settings


def verdict(version: str, n: int, confidence: float, right: bool) -> AuditVerdict:
    return AuditVerdict(
        loop_name=f"loop-{version}-{n}",
        image_id=f"img{n}",
        detection_id=f"det-{n}",
        model_version=version,
        task="boxes",
        tp=int(right),
        fp=int(not right),
        fn=0,
        agrees=right,
        human_agreement=1.0,
        predicted=[{"label": "face", "confidence": confidence, "box_px": None}],
        pairs=[(0, 0, 0.9)] if right else [],
    )


def test_scored_detections_mark_matched_boxes_right() -> None:
    v = verdict("v", 1, 88.0, True)
    assert scored_detections(v) == [("face", 88.0, True)]
    assert scored_detections(verdict("v", 2, 40.0, False)) == [("face", 40.0, False)]


def test_audit_report_shows_the_bound_and_too_few_audits(settings: Settings) -> None:
    s3 = aws.client("s3")
    if settings.bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=settings.bucket)
    store = AuditStore(settings)
    version, sparse = f"vA{uuid.uuid4().hex[:6]}", f"vB{uuid.uuid4().hex[:6]}"
    for n in range(120):
        assert store.record(verdict(version, n, 95.0 - n * 0.1, True))
    for n in range(120, 140):
        store.record(verdict(version, n, 60.0 - n * 0.1, n % 3 == 0))
    assert not store.record(verdict(version, 0, 95.0, True)), "a redelivered verdict counts once"
    for n in range(10):
        store.record(verdict(sparse, n, 90.0, True))

    accept = store.auto_accept(version, 0.95)["face"]
    assert accept.status == "ok"
    assert accept.audited == 140
    # Every flawless high-confidence detection, and lower ones only while the bound still holds.
    assert 120 <= accept.accepted < 140
    assert accept.threshold is not None
    assert accept.threshold <= 95.0 - 119 * 0.1
    assert accept.precision_lower_bound is not None
    assert accept.precision_lower_bound >= 0.95
    assert store.auto_accept(sparse, 0.95)["face"].status == "too_few_audits"

    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-m", "hitl.cli.audit", "report", "--json"], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    data = json.loads(out.stdout)
    assert data["target_auto_accept_precision"] == 0.95
    assert data["model_versions"][version]["auto_accept"]["face"]["threshold"] == accept.threshold
    assert data["model_versions"][sparse]["auto_accept"]["face"]["status"] == "too_few_audits"
    text = subprocess.run(
        [sys.executable, "-m", "hitl.cli.audit", "report"], env=env, capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout  # fmt: skip
    assert f"auto-accept ≥ {accept.threshold:.1f}" in text
    assert "too few audits: 10 audited detections, at least 59 needed" in text
