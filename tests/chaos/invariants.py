"""The chaos run's verdict, computed apart from the code under test.

Expected sets come from what the load submitted and what the simulated reviewers answered; actual
state is read straight from S3 (records, dataset lines, audit verdicts), the review service's A2I
API (loops), SQS (dead-letter queues) and Redis (image states, dead-letter lists, memory), with
plain boto3 and redis-py calls. Nothing here calls the pipeline's own adapters.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

FINAL_STATES = ("detected", "rejected", "dead_lettered")
LOOP_PREFIX = "det-"


@dataclass
class Expected:
    accepted: dict[str, str]  # image id -> entry point
    poison_images: set[str]
    poison_loop: str
    answered: set[str]  # loop names the reviewers answered
    sampling_interval: int
    min_confidence: float


@dataclass
class Actual:
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # image id -> records
    loops: dict[str, dict[str, Any]] = field(default_factory=dict)  # loop name -> summary
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)  # loop name -> dataset line
    audits: dict[str, int] = field(default_factory=dict)  # loop name -> verdict objects
    states: dict[str, dict[str, str]] = field(default_factory=dict)  # image id -> index hash
    redis_dlq: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # queue -> entries
    sqs_dlq: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # queue -> message bodies
    unappliable: dict[str, str] = field(default_factory=dict)  # loop name -> reason
    redis_memory: int = 0
    redis_keys: int = 0


def _list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def _json_object(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def read_actual(
    s3: Any,
    a2i: Any,
    sqs: Any,
    redis: Any,
    *,
    bucket: str,
    key_prefix: str,
    flow_arn: str,
    image_ids: list[str],
    dlq_urls: dict[str, str],
    dataset: str = "human-labels",
) -> Actual:
    actual = Actual()
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = _list_keys(s3, bucket, "detections/")
        for record in pool.map(lambda key: _json_object(s3, bucket, key), keys):
            actual.records.setdefault(str(record.get("image_id")), []).append(record)
    token: dict[str, Any] = {}
    while True:
        page = a2i.list_human_loops(FlowDefinitionArn=flow_arn, MaxResults=100, SortOrder="Ascending", **token)
        for summary in page.get("HumanLoopSummaries", []):
            actual.loops[summary["HumanLoopName"]] = summary
        if not page.get("NextToken"):
            break
        token = {"NextToken": page["NextToken"]}
    lines_prefix = f"datasets/{dataset}/lines/"
    with ThreadPoolExecutor(max_workers=8) as pool:
        keys = _list_keys(s3, bucket, lines_prefix)
        for key, line in zip(keys, pool.map(lambda key: _json_object(s3, bucket, key), keys), strict=True):
            actual.lines[key[len(lines_prefix) : -len(".json")]] = line
    for key in _list_keys(s3, bucket, "audits/"):
        name = key.rsplit("/", 1)[-1][: -len(".json")]
        actual.audits[name] = actual.audits.get(name, 0) + 1
    pipe = redis.pipeline()
    for image_id in image_ids:
        pipe.hgetall(f"{key_prefix}:image:{image_id}")
    actual.states = dict(zip(image_ids, pipe.execute(), strict=True))
    for queue in ("detect", "dispatch", "ingest", "train"):
        actual.redis_dlq[queue] = [json.loads(x) for x in redis.lrange(f"{key_prefix}:dlq:{queue}", 0, -1)]
    for name, url in dlq_urls.items():
        bodies = []
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300, WaitTimeSeconds=0)
            if not got.get("Messages"):
                break
            bodies += [json.loads(m["Body"]) for m in got["Messages"]]
        actual.sqs_dlq[name] = bodies
    actual.unappliable = dict(redis.hgetall(f"{key_prefix}:loops:unappliable"))
    actual.redis_memory = int(redis.info("memory")["used_memory"])
    actual.redis_keys = int(redis.dbsize())
    return actual


def loop_name(image_id: str) -> str:
    return f"{LOOP_PREFIX}{image_id[:32]}"


def judge(expected: Expected, actual: Actual) -> dict[str, Any]:
    """Every figure of the verdict, and the list of broken invariants (empty when all hold)."""
    broken: list[str] = []
    healthy = set(expected.accepted) - expected.poison_images

    # 1. Every accepted image has exactly one record; nothing is still queued.
    lost_images = sorted(i for i in healthy if i not in actual.records)
    duplicate_records = sorted(i for i, found in actual.records.items() if len(found) > 1)
    poison_recorded = sorted(i for i in expected.poison_images if i in actual.records)
    still_queued = sorted(i for i in expected.accepted if actual.states.get(i, {}).get("state") not in FINAL_STATES)
    poison_not_dead = sorted(
        i for i in expected.poison_images if actual.states.get(i, {}).get("state") != "dead_lettered"
    )
    if lost_images:
        broken.append(f"{len(lost_images)} accepted images have no record, e.g. {lost_images[:3]}")
    if duplicate_records:
        broken.append(f"{len(duplicate_records)} images have more than one record")
    if poison_recorded:
        broken.append(f"poison images recorded as detected: {poison_recorded}")
    if still_queued:
        states = Counter(actual.states.get(i, {}).get("state", "<none>") for i in still_queued)
        broken.append(
            f"{len(still_queued)} accepted images not in a final state: {dict(states)}, e.g. {still_queued[:3]}"
        )
    if poison_not_dead:
        broken.append(f"poison images not dead_lettered in the index: {poison_not_dead}")

    # 2. Every routed detection has exactly one loop; no loop for anything else.
    mine = {i: r[0] for i, r in actual.records.items() if i in expected.accepted}
    routed = {i for i, r in mine.items() if (r.get("route") or {}).get("reasons")}
    loops_by_detection: dict[str, list[str]] = defaultdict(list)
    for name in actual.loops:
        if name.startswith(LOOP_PREFIX):
            loops_by_detection[name.split("-r", 1)[0] if "-r" in name[4:] else name].append(name)
    lost_loops = sorted(i for i in routed if loop_name(i) not in loops_by_detection)
    duplicate_loops = sorted(n for n, names in loops_by_detection.items() if len(names) > 1)
    routed_names = {loop_name(i) for i in routed}
    unexpected_loops = sorted(n for n in loops_by_detection if n not in routed_names)
    if lost_loops:
        broken.append(f"{len(lost_loops)} routed detections have no loop, e.g. {lost_loops[:3]}")
    if duplicate_loops:
        broken.append(f"{len(duplicate_loops)} detections have more than one loop, e.g. {duplicate_loops[:3]}")
    if unexpected_loops:
        broken.append(f"{len(unexpected_loops)} loops for detections not routed, e.g. {unexpected_loops[:3]}")

    # 3. Every Completed low-confidence loop the reviewers answered has exactly one dataset line.
    def reasons(image_id: str) -> list[str]:
        return list((mine[image_id].get("route") or {}).get("reasons") or [])

    completed = {n for n, s in actual.loops.items() if s["HumanLoopStatus"] == "Completed"}
    not_completed = sorted(loop_name(i) for i in routed if loop_name(i) not in completed)
    if not_completed:
        broken.append(f"{len(not_completed)} routed loops not Completed, e.g. {not_completed[:3]}")
    unanswered = sorted(n for n in completed if n not in expected.answered and n != expected.poison_loop)
    if unanswered:
        broken.append(f"{len(unanswered)} loops Completed without a reviewer's answer, e.g. {unanswered[:3]}")
    expected_lines = {
        loop_name(i) for i in routed if "low_confidence" in reasons(i) and loop_name(i) in completed
    } & expected.answered
    missing_lines = sorted(expected_lines - set(actual.lines))
    extra_lines = sorted(set(actual.lines) - expected_lines)
    by_source = Counter(str(line.get("source-ref")) for line in actual.lines.values())
    duplicate_lines = sorted(ref for ref, n in by_source.items() if n > 1)
    if missing_lines:
        broken.append(
            f"{len(missing_lines)} answered low-confidence loops have no dataset line, e.g. {missing_lines[:3]}"
        )
    if extra_lines:
        broken.append(f"{len(extra_lines)} dataset lines without an answered low-confidence loop: {extra_lines[:3]}")
    if duplicate_lines:
        broken.append(f"{len(duplicate_lines)} images have more than one dataset line")

    # 4. Audit verdicts equal the audit loops.
    expected_audits = {loop_name(i) for i in routed if "audit" in reasons(i) and loop_name(i) in completed}
    missing_audits = sorted(expected_audits - set(actual.audits))
    extra_audits = sorted(set(actual.audits) - expected_audits)
    duplicate_audits = sorted(n for n, c in actual.audits.items() if c > 1)
    if missing_audits or extra_audits or duplicate_audits:
        broken.append(
            f"audit verdicts differ from audit loops: {len(missing_audits)} missing, {len(extra_audits)} extra, "
            f"{len(duplicate_audits)} duplicated"
        )

    # 5. The dead-letter lists and queues hold exactly the injected poison, each once.
    dlq_images = Counter(str(e.get("kwargs", {}).get("image_id")) for e in actual.redis_dlq.get("detect", []))
    if dict(dlq_images) != dict.fromkeys(expected.poison_images, 1):
        broken.append(f"detect dead letters {dict(dlq_images)} != the poison images, once each")
    for queue in ("dispatch", "ingest", "train"):
        if actual.redis_dlq.get(queue):
            broken.append(f"{len(actual.redis_dlq[queue])} unexpected dead letters in {queue}")
    dead_events = Counter(str((b.get("detail") or {}).get("humanLoopName")) for b in actual.sqs_dlq.get("events", []))
    if dict(dead_events) != {expected.poison_loop: 1}:
        broken.append(f"events DLQ {dict(dead_events)} != the poison loop, once")
    if set(actual.unappliable) != {expected.poison_loop}:
        broken.append(f"loops recorded as unappliable {actual.unappliable} != the poison loop")
    if actual.sqs_dlq.get("uploads"):
        broken.append(f"{len(actual.sqs_dlq['uploads'])} upload notifications dead-lettered")

    # 6. Audit samples are exactly every nth detection, each detection counted once.
    detected = [r[0] for r in actual.records.values()]
    sequences = sorted(int((r.get("route") or {}).get("sample_seq") or 0) for r in detected)
    sampling_ok = sequences == list(range(1, len(detected) + 1))
    wrong_audit = [
        r["image_id"]
        for r in detected
        if ("audit" in ((r.get("route") or {}).get("reasons") or []))
        != (int((r.get("route") or {}).get("sample_seq") or 0) % expected.sampling_interval == 0)
    ]
    # The low-confidence route follows the threshold set for the run.
    misrouted = [
        r["image_id"]
        for r in detected
        if ("low_confidence" in ((r.get("route") or {}).get("reasons") or []))
        != (max((x["confidence"] for x in r.get("labels") or []), default=-1.0) < expected.min_confidence)
    ]
    if misrouted:
        broken.append(f"{len(misrouted)} detections routed against the confidence threshold")
    if not sampling_ok:
        broken.append("sample sequence numbers are not 1..N, each once")
    if wrong_audit:
        broken.append(f"{len(wrong_audit)} detections audited against every-nth sampling")

    # 7. Forward-only loop status: no finished loop is shown open again.
    reopened = sorted(
        i
        for i in routed
        if loop_name(i) in completed
        and (mine[i].get("loop_status") != "Completed" or actual.states.get(i, {}).get("loop_status") != "Completed")
    )
    if reopened:
        broken.append(f"{len(reopened)} Completed loops shown as not Completed (record or index), e.g. {reopened[:3]}")

    lost = len(lost_images) + len(lost_loops)
    return {
        "images": len(expected.accepted),
        "records": sum(len(v) for i, v in actual.records.items() if i in expected.accepted),
        "loops": len(actual.loops),
        "dataset_lines": len(actual.lines),
        "audit_verdicts": sum(actual.audits.values()),
        "lost": lost,
        "lost_images": len(lost_images),
        "lost_loops": len(lost_loops),
        "duplicate_records": len(duplicate_records),
        "duplicate_loops": len(duplicate_loops),
        "duplicate_lines": len(duplicate_lines),
        "missing_lines": len(missing_lines),
        "extra_lines": len(extra_lines),
        "still_queued": len(still_queued),
        "routed": len(routed),
        "answered": len(expected.answered),
        "reopened_loops": len(reopened),
        "dlq": {
            "detect": dict(dlq_images),
            **{q: len(actual.redis_dlq.get(q, [])) for q in ("dispatch", "ingest", "train")},
            "sqs_events": dict(dead_events),
            "sqs_uploads": len(actual.sqs_dlq.get("uploads", [])),
            "unappliable_loops": actual.unappliable,
        },
        "redis_used_memory_bytes": actual.redis_memory,
        "redis_keys": actual.redis_keys,
        "broken": broken,
    }
