"""The held-back test split of a cold start, carved from the user's own labels. Pure.

When no test manifest exists (a user who starts from nothing, not from the demo's fixed split), the
first training run holds back a share of the labelled images: those whose SHA-256 of ``source-ref``
is lowest. The choice depends only on the images, not on the order answers arrived in, so a retried
first run picks the same images; the trainer then writes the split to the test manifest key, and
every later run reads it from there unchanged: the split is fixed once carved, and its images are
never trained on.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

HELD_BACK_FRACTION = 0.2
MIN_HELD_BACK = 2
MIN_TRAINING = 2


def _rank(line: Mapping[str, Any]) -> str:
    return hashlib.sha256(str(line["source-ref"]).encode()).hexdigest()


def carve_test_split(
    lines: Sequence[Mapping[str, Any]], fraction: float = HELD_BACK_FRACTION
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test): ``fraction`` of the lines (at least ``MIN_HELD_BACK``) held back by hash rank.

    Too few lines to leave ``MIN_TRAINING`` for training: nothing is held back (the caller then has
    no test split and does not train yet).
    """
    count = max(MIN_HELD_BACK, math.ceil(len(lines) * fraction))
    if len(lines) - count < MIN_TRAINING:
        return [dict(line) for line in lines], []
    ranked = sorted(lines, key=_rank)
    held = {str(line["source-ref"]) for line in ranked[:count]}
    train = [dict(line) for line in lines if str(line["source-ref"]) not in held]
    test = [dict(line) for line in ranked[:count]]
    return train, test
