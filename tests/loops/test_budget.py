"""The review budget end to end: the dispatcher against real Redis, moto's server (S3, SSM) and the
review service over HTTP. With a budget of N loops per hour at most N start in the hour; the rest
wait with their status saying why, are re-ranked, and start as the budget frees; none is lost."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from hitl.adapters.records import RecordStore
from hitl.adapters.redis_index import ImageIndex
from hitl.domain.records import RouteDecision
from hitl.loops.dispatch import WAITING_STATUS, Dispatcher, release_waiting
from hitl.loops.names import loop_name_for
from hitl.params import ParameterStore
from hitl.settings import Settings
from tests.loops.test_dispatch_ingest import FLOW, loop_settings, make_record  # noqa: F401
from tests.review.conftest import (  # noqa: F401 - fixtures of the review service
    ReviewProcess,
    a2i_client,
    aws_env,
    review_files,
    start_review,
)

pytestmark = pytest.mark.integration

BUDGET = 4


@pytest.fixture(scope="module")
def review(start_review: Any) -> ReviewProcess:  # noqa: F811
    # Its own review service: the dispatch tests' one is a module fixture of theirs, started by name.
    process: ReviewProcess = start_review("budget")
    return process


def started_loops(client: Any, names: set[str]) -> set[str]:
    found: set[str] = set()
    for page in client.get_paginator("list_human_loops").paginate(FlowDefinitionArn=FLOW):
        found |= {s["HumanLoopName"] for s in page["HumanLoopSummaries"] if s["HumanLoopName"] in names}
    return found


def test_budget_holds_waits_and_releases_best_first(
    loop_settings: Settings,  # noqa: F811
    review: ReviewProcess,
) -> None:
    tag = uuid.uuid4().hex[:8]
    s = loop_settings.model_copy(update={"key_prefix": f"budget{tag}", "params_path": f"/hitl-budget-{tag}/"})
    params = ParameterStore(s)
    params.set("Max-Human-Reviews-Per-Hour", str(BUDGET))
    params.set("Routing-Strategy", "uncertainty")
    client = a2i_client(review.url)
    dispatcher = Dispatcher(s, client=client, params=params)
    t0 = time.time()
    dispatcher.budget.clock = lambda: t0

    records = []
    for priority in [0.5, 0.1, 0.2, 0.3, 0.95, 0.4, 0.9, 0.6, 0.7, 0.05]:
        record = make_record(s, ["low_confidence"])
        record.route = RouteDecision(reasons=["low_confidence"], priority=priority)
        RecordStore(s).put(record)
        records.append(record)
    audit = make_record(s, ["audit"])
    audit.route = RouteDecision(reasons=["audit"], priority=2.0)
    RecordStore(s).put(audit)
    records.append(audit)
    names = {loop_name_for(r.detection_id) for r in records}
    by_image = {r.image_id: r for r in records}

    outcomes = [dispatcher.dispatch(r.image_id, r.detection_id).outcome for r in records]
    assert outcomes == ["started"] * BUDGET + ["waiting"] * (len(records) - BUDGET)
    assert len(started_loops(client, names)) == BUDGET, "at most the budget starts in the hour"
    index = ImageIndex(s)
    statuses = {r.image_id: index.get(r.image_id).get("loop_status") for r in records}
    assert sorted(statuses.values()) == sorted(["InProgress"] * BUDGET + [WAITING_STATUS] * (len(records) - BUDGET))
    waiting_record = RecordStore(s).get(records[-1].image_id)
    assert waiting_record is not None
    assert waiting_record.loop_status == WAITING_STATUS, "the durable record says why too"

    # Redelivered, a waiting dispatch stays waiting; a release with the budget spent sends nothing.
    assert dispatcher.dispatch(records[-1].image_id, records[-1].detection_id).outcome == "waiting"
    sent: list[str] = []

    def send(image_id: str, detection_id: str, attempt: int) -> None:
        sent.append(image_id)
        assert dispatcher.dispatch(image_id, detection_id, attempt).outcome == "started"

    assert release_waiting(dispatcher, send) == []

    # An hour later the budget frees: the audit sample first, then the most uncertain.
    dispatcher.budget.clock = lambda: t0 + 3601
    released = release_waiting(dispatcher, send)
    assert [by_image[i].route.priority for i in released] == [2.0, 0.95, 0.9, 0.7]
    assert len(started_loops(client, names)) == 2 * BUDGET
    assert release_waiting(dispatcher, send) == [], "the new hour's budget is spent too"
    left = {w.image_id for w in dispatcher.budget.waiting()}
    assert {by_image[i].route.priority for i in left} == {0.6, 0.4, 0.05}

    # Open loops: with at most 2*BUDGET open and none ending, nothing more starts; one ends, one starts.
    params.set("Max-Human-Reviews-Per-Hour", "0")
    params.set("Max-Open-Human-Loops", str(2 * BUDGET))
    assert release_waiting(dispatcher, send) == []
    done = next(r for r in records if index.get(r.image_id).get("loop_status") == "InProgress")
    dispatcher.status.update(done.image_id, loop_name_for(done.detection_id), "Completed", "labelled")
    assert [by_image[i].route.priority for i in release_waiting(dispatcher, send)] == [0.6]

    # No limits: everything still waiting starts; every image has a loop, none is lost.
    params.set("Max-Open-Human-Loops", "0")
    release_waiting(dispatcher, send)
    assert dispatcher.budget.waiting() == []
    assert started_loops(client, names) == names
    assert all(index.get(r.image_id).get("loop_status") in ("InProgress", "Completed") for r in records)
