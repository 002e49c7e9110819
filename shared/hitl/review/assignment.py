"""Which reviewer may take which loop: TaskCount distinct reviewers, each holding a timed claim.

A reviewer opening a task claims one of its TaskCount slots for TaskTimeLimitInSeconds; an expired
claim frees the slot for someone else. A reviewer never answers the same loop twice, and a skipped
loop is not offered to that reviewer again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hitl.review.errors import PortalError
from hitl.review.loops import Answer, HumanLoop, Status


def _live_claims(loop: HumanLoop, now: datetime) -> dict[str, datetime]:
    limit = timedelta(seconds=loop.flow.task_time_limit_in_seconds)
    return {who: at for who, at in loop.claims.items() if now - at < limit}


def holds_claim(loop: HumanLoop, reviewer: str, now: datetime) -> bool:
    """Whether the reviewer's claim is live: within the task's time limit and the loop's deadline."""
    return reviewer in _live_claims(loop, now) and now < loop.deadline


def answered_by(loop: HumanLoop, reviewer: str) -> bool:
    return any(a.reviewer == reviewer for a in loop.answers)


def can_offer(loop: HumanLoop, reviewer: str, now: datetime) -> bool:
    if loop.status is not Status.IN_PROGRESS or loop.completing or now >= loop.deadline:
        return False
    if answered_by(loop, reviewer) or reviewer in loop.skipped:
        return False
    live = _live_claims(loop, now)
    if reviewer in live:
        return True
    return len(loop.answers) + len(live) < loop.flow.task_count


def claim(loop: HumanLoop, reviewer: str, now: datetime) -> datetime:
    """Take (or keep) a slot; the returned acceptance time starts the task's clock."""
    if not can_offer(loop, reviewer, now):
        raise PortalError(409, "This task is no longer available to you")
    live = _live_claims(loop, now)
    loop.claims = {**live, reviewer: live.get(reviewer, now)}
    return loop.claims[reviewer]


def record_answer(loop: HumanLoop, reviewer: str, content: dict[str, Any], now: datetime) -> Answer:
    """Store an answer; when the last slot is filled the loop starts completing."""
    if loop.status is not Status.IN_PROGRESS or loop.completing:
        raise PortalError(409, "This task is closed")
    if answered_by(loop, reviewer):
        raise PortalError(409, "You already answered this task")
    accepted = loop.claims.get(reviewer)
    if accepted is None:
        raise PortalError(409, "Open the task before answering it")
    if now >= loop.deadline:
        raise PortalError(409, "This task expired before your answer arrived")
    if reviewer not in _live_claims(loop, now):
        raise PortalError(409, "Your time on this task ran out; open it again if it is still offered")
    answer = Answer(reviewer=reviewer, answer_content=content, acceptance_time=accepted, submission_time=now)
    loop.answers.append(answer)
    loop.claims.pop(reviewer, None)
    if len(loop.answers) >= loop.flow.task_count:
        loop.completing = True
        loop.claims.clear()
    return answer


def skip(loop: HumanLoop, reviewer: str) -> None:
    loop.claims.pop(reviewer, None)
    if reviewer not in loop.skipped:
        loop.skipped.append(reviewer)
