"""diverse-uncertainty's memory of recently routed images, on the real Redis."""

from __future__ import annotations

import uuid

import numpy as np

from hitl.adapters.redis_index import RECENT_DESCRIPTORS_KEPT, ImageIndex
from hitl.domain.strategies import is_near_duplicate
from hitl.settings import Settings


def test_recent_descriptors_round_trip_bounded_and_never_self(redis_url: str) -> None:
    index = ImageIndex(Settings(redis_url=redis_url, key_prefix=f"recent-{uuid.uuid4().hex[:8]}"))
    assert index.recent_descriptors(exclude="a").shape[0] == 0
    first = np.linspace(-1, 1, 64)
    first /= np.linalg.norm(first)
    index.remember_descriptor("a", first)
    # Another image sees it; a redelivery of "a" itself does not take it for a near-duplicate.
    seen = index.recent_descriptors(exclude="b")
    assert seen.shape == (1, 64)
    assert is_near_duplicate(first, seen, 0.02)
    assert index.recent_descriptors(exclude="a").shape[0] == 0
    for i in range(RECENT_DESCRIPTORS_KEPT + 5):
        index.remember_descriptor(f"x{i}", first)
    assert index.recent_descriptors(exclude="none").shape[0] == RECENT_DESCRIPTORS_KEPT
