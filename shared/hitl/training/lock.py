"""One training run at a time: a Redis lock with an expiry and a fencing token.

The token grows with every acquisition. A run that outlived its lock (a paused process, a lost
network) still holds an old token, so ``is_current`` refuses its late promotion.

The expiry is short and :meth:`TrainingLock.kept_alive` extends it while the run works: a killed run
stops extending, so its lock expires within one TTL and the next poll can train again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

import redis

from hitl.settings import Settings

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


class LockHeld(RuntimeError):
    pass


class TrainingLock:
    def __init__(self, client: redis.Redis, settings: Settings, ttl_seconds: int) -> None:
        self.redis = client
        self.key = settings.key("training", "lock")
        self.fence_key = settings.key("training", "fence")
        self.ttl = ttl_seconds
        self.token: int | None = None
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)

    def acquire(self) -> int:
        token = int(self.redis.incr(self.fence_key))  # type: ignore[arg-type]
        if not self.redis.set(self.key, str(token), nx=True, ex=self.ttl):
            raise LockHeld(f"training already running (token {self.redis.get(self.key)!r})")
        self.token = token
        return token

    def holder(self) -> str | None:
        value = self.redis.get(self.key)
        return None if value is None else str(value)

    def is_current(self) -> bool:
        return self.token is not None and self.holder() == str(self.token)

    def extend(self) -> bool:
        return bool(self._extend(keys=[self.key], args=[str(self.token), self.ttl]))

    @contextmanager
    def kept_alive(self, every: float | None = None) -> Iterator[None]:
        """Extend the lock every ``every`` seconds (a third of the TTL) until the block ends."""
        done = threading.Event()
        interval = every if every is not None else max(1.0, self.ttl / 3)

        def beat() -> None:
            while not done.wait(interval):
                if not self.extend():
                    return  # lost (expired while the process was paused): promotion is refused later

        thread = threading.Thread(target=beat, name="training-lock", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=5)

    def release(self) -> None:
        if self.token is not None:
            self._release(keys=[self.key], args=[str(self.token)])
            self.token = None

    def __enter__(self) -> TrainingLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
