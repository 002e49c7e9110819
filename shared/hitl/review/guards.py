"""Abuse guards kept in Redis, so every replica sees the same state.

- Sign-in backoff: failures are counted per subject (a client address, an account name) over a
  window; after ``free`` failures each further one locks the subject out for ``base * 2**n`` seconds
  (capped), and a locked-out sign-in is answered 429 before any password is checked.
- Replay: a SigV4 signature is accepted once within the clock-skew window.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import redis

# Count the failure and, past the free ones, set the lock-out; atomically, in one round trip.
_FAIL = """
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('expire', KEYS[1], ARGV[1]) end
local free = tonumber(ARGV[2])
if n <= free then return 0 end
local ms = math.min(tonumber(ARGV[3]) * (2 ^ (n - free - 1)), tonumber(ARGV[4]))
ms = math.floor(ms)
redis.call('set', KEYS[2], '1', 'PX', ms)
return ms
"""


def backoff_seconds(failures: int, free: int, base: float, cap: float) -> float:
    """The lock-out after the ``failures``-th failure (0 for the first ``free`` of them)."""
    if failures <= free:
        return 0.0
    return float(min(base * 2.0 ** (failures - free - 1), cap))


@dataclass(frozen=True)
class SigninPolicy:
    free_failures: int = 5
    window_seconds: int = 900
    base_seconds: float = 2.0
    max_seconds: float = 900.0


def _subject(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()[:32]


class Guards:
    def __init__(self, client: redis.Redis, key: Any, policy: SigninPolicy) -> None:
        self.r = client
        self._key = key
        self.policy = policy
        self._fail = self.r.register_script(_FAIL)

    def k(self, *parts: str) -> str:
        return str(self._key("review", *parts))

    def signin_retry_after(self, subjects: list[str]) -> int:
        """Seconds until every subject may try again (0: now)."""
        with self.r.pipeline(transaction=False) as pipe:
            for subject in subjects:
                pipe.pttl(self.k("signin-lock", _subject(subject)))
            ttls = pipe.execute()
        longest = max([int(t) for t in ttls if int(t) > 0] or [0])
        return math.ceil(longest / 1000)

    def signin_failed(self, subjects: list[str]) -> int:
        """Record a failure for each subject; the longest lock-out it caused, in seconds."""
        policy = self.policy
        longest = 0
        for subject in subjects:
            digest = _subject(subject)
            ms = self._fail(
                keys=[self.k("signin-failures", digest), self.k("signin-lock", digest)],
                args=[policy.window_seconds, policy.free_failures, int(policy.base_seconds * 1000),
                      int(policy.max_seconds * 1000)],
            )
            longest = max(longest, int(ms))  # type: ignore[arg-type]
        return math.ceil(longest / 1000)

    def signin_succeeded(self, subject: str) -> None:
        digest = _subject(subject)
        self.r.delete(self.k("signin-failures", digest), self.k("signin-lock", digest))

    def first_use(self, signature: str, ttl_seconds: int) -> bool:
        """True the first time ``signature`` is seen within ``ttl_seconds``."""
        return bool(self.r.set(self.k("sigv4-seen", signature), b"1", nx=True, ex=max(1, ttl_seconds)))
