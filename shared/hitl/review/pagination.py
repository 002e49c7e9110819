"""ListHumanLoops NextToken: an opaque cursor (creation ms, name) bound to the query it came from."""

from __future__ import annotations

import base64
import hashlib
import json

from hitl.review.errors import ValidationError

Cursor = tuple[int, str]


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


def encode(cursor: Cursor, query: str) -> str:
    raw = json.dumps({"s": cursor[0], "n": cursor[1], "q": query}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, query: str) -> Cursor:
    try:
        padded = token + "=" * (-len(token) % 4)
        found = json.loads(base64.urlsafe_b64decode(padded.encode()))
        score, name, bound = found["s"], found["n"], found["q"]
    except (ValueError, KeyError, TypeError):
        raise ValidationError("Invalid NextToken") from None
    if not isinstance(score, int) or not isinstance(name, str) or bound != query:
        raise ValidationError("NextToken does not belong to this query")
    return score, name


def after(entry: Cursor, cursor: Cursor, ascending: bool) -> bool:
    """Whether ``entry`` comes after ``cursor`` in the listing order."""
    return entry > cursor if ascending else entry < cursor
