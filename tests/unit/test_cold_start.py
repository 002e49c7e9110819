"""Cold start, pure parts: the held-back split and what `hitl status` says."""

from __future__ import annotations

from hitl.domain.waiting import PipelineState, cold_start_line, explain
from hitl.training.split import MIN_HELD_BACK, carve_test_split


def _lines(n: int, prefix: str = "s3://b/images/") -> list[dict[str, str]]:
    return [{"source-ref": f"{prefix}{i:04d}.png"} for i in range(n)]


def test_split_holds_back_a_fifth_by_hash_whatever_the_order() -> None:
    lines = _lines(30)
    train, test = carve_test_split(lines)
    assert len(test) == 6
    assert len(train) == 24
    assert not {x["source-ref"] for x in train} & {x["source-ref"] for x in test}
    _, again = carve_test_split(list(reversed(lines)))
    assert sorted(x["source-ref"] for x in again) == sorted(x["source-ref"] for x in test)


def test_split_needs_enough_lines_and_holds_back_at_least_the_minimum() -> None:
    assert carve_test_split(_lines(3))[1] == []
    train, test = carve_test_split(_lines(5))
    assert len(test) == MIN_HELD_BACK
    assert len(train) == 3


def test_status_explains_cold_start_and_waiting_images() -> None:
    cold = PipelineState(serving_version=None, detect_queue_depth=5, labels=3, minimum_untrained=10)
    line = cold_start_line(cold)
    assert line is not None
    assert "cold start" in line
    assert "7 more label(s)" in line
    assert cold_start_line(PipelineState(serving_version="v0001")) is None
    assert "behind about 4" in explain({"state": "queued"}, cold)
    assert "dispatch pending" in explain({"state": "detected", "route": "cold_start"}, cold)
    entry = {"state": "detected", "route": "cold_start", "loop_name": "det-x", "loop_status": "InProgress"}
    waiting = explain(entry, cold)
    assert "from scratch" in waiting
    dead = explain({"state": "dead_lettered", "reason": "dispatch_exhausted"}, cold)
    assert "dispatch_exhausted" in dead
    assert "redrive" in dead
