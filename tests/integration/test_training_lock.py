"""The training lock on the real Redis: one holder, expiry, fencing."""

from __future__ import annotations

import threading

import pytest
import redis as redis_lib

from hitl.settings import Settings
from hitl.training.lock import LockHeld, TrainingLock
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.integration


def make(redis_url: str, ttl: int = 30) -> TrainingLock:
    settings = Settings(redis_url=redis_url, key_prefix="locktest")
    return TrainingLock(redis_lib.Redis.from_url(redis_url, decode_responses=True), settings, ttl)


def test_two_triggers_at_once_only_one_trains(redis_url: str) -> None:
    make(redis_url).redis.delete("locktest:training:lock")
    barrier = threading.Barrier(8)
    winners: list[int] = []
    losers: list[str] = []

    def trigger() -> None:
        lock = make(redis_url)
        barrier.wait()
        try:
            winners.append(lock.acquire())
        except LockHeld as exc:
            losers.append(str(exc))

    threads = [threading.Thread(target=trigger) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert len(losers) == 7
    make(redis_url).redis.delete("locktest:training:lock")


def test_fencing_refuses_a_holder_whose_lock_expired(redis_url: str) -> None:
    first = make(redis_url, ttl=1)
    first.redis.delete("locktest:training:lock")
    token1 = first.acquire()
    assert first.is_current()
    # The first run stalls past its lock's expiry: Redis drops the key.
    wait_until(lambda: first.holder() is None, 10, "the first lock to expire", interval=0.05)
    second = make(redis_url, ttl=30)
    token2 = second.acquire()
    assert token2 > token1
    assert not first.is_current(), "the stalled run may not promote"
    first.release()  # must not free the second holder's lock
    assert second.is_current()
    assert not first.extend()
    assert second.extend()
    second.release()
    assert second.holder() is None
