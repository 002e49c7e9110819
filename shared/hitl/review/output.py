"""``output.json`` in A2I's schema (docs/formats.md §2)."""

from __future__ import annotations

import hashlib
from typing import Any

from hitl.review import timefmt
from hitl.review.loops import Answer, HumanLoop

IDENTITY_PROVIDER = "hitl-review"


def worker_id(reviewer: str) -> str:
    """A stable, opaque id like A2I's (16 hex digits); the name stays in ``workerMetadata``."""
    return hashlib.sha256(reviewer.encode()).hexdigest()[:16]


def _answer(answer: Answer, issuer: str) -> dict[str, Any]:
    return {
        "answerContent": answer.answer_content,
        "submissionTime": timefmt.iso(answer.submission_time),
        "acceptanceTime": timefmt.iso(answer.acceptance_time),
        "timeSpentInSeconds": answer.seconds,
        "workerId": worker_id(answer.reviewer),
        "workerMetadata": {
            "identityData": {
                "identityProviderType": IDENTITY_PROVIDER,
                "issuer": issuer,
                "sub": answer.reviewer,
            }
        },
    }


def build(loop: HumanLoop, issuer: str) -> dict[str, Any]:
    return {
        "flowDefinitionArn": loop.flow_arn,
        "humanLoopName": loop.name,
        "inputContent": loop.input_document,
        "humanAnswers": [_answer(a, issuer) for a in loop.answers],
    }
