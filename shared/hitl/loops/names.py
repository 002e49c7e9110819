"""Human-loop names: valid for A2I and derived only from the detection id, so a retried dispatch
reuses the name and A2I itself refuses a second loop."""

from __future__ import annotations

import hashlib
import re

LOOP_NAME_RE = re.compile(r"^[a-z0-9](-*[a-z0-9])*$")
LOOP_NAME_MAX = 63
_INVALID = re.compile(r"[^a-z0-9]+")
_DIGEST_CHARS = 12


def loop_name_for(detection_id: str, attempt: int = 0) -> str:
    """``det-…`` as is when valid; ``-r<n>`` marks the n-th re-dispatch. Ids that need cleaning or
    shortening get a digest of the original, so two ids never share a name."""
    suffix = f"-r{attempt}" if attempt else ""
    stem = _INVALID.sub("-", detection_id.lower()).strip("-")
    room = LOOP_NAME_MAX - len(suffix)
    if stem != detection_id or len(stem) > room or not stem:
        digest = hashlib.sha256(detection_id.encode()).hexdigest()[:_DIGEST_CHARS]
        stem = f"{stem[: room - _DIGEST_CHARS - 1].strip('-')}-{digest}".lstrip("-")
    name = f"{stem}{suffix}"
    if not LOOP_NAME_RE.fullmatch(name) or len(name) > LOOP_NAME_MAX:
        raise ValueError(f"cannot derive a valid loop name from {detection_id!r}")
    return name
