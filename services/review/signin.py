"""Sign-in attempts: throttled per client address and per account, bounded in concurrency, counted.

A password check is argon2id at 64 MiB, so at most ``review_login_concurrency`` run at once, on
their own threads (never Starlette's shared pool), and at most ``review_login_waiting`` attempts
wait for one; beyond that an attempt is answered 429 at once. A client address or account locked
out by repeated failures (:class:`hitl.review.guards.Guards`) is answered 429 with ``Retry-After``
before any password is checked. Every attempt is logged (without the password) and counted in
``hitl_review_signins_total{outcome}``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from hitl.logs import get_logger
from hitl.review import reviewers
from hitl.review.accounts import Account
from services.review import metrics
from services.review.config import Runtime

log = get_logger()
OUTCOMES = ("success", "failure", "throttled", "busy", "invalid_form")


@dataclass(frozen=True)
class Attempt:
    outcome: str
    account: Account | None = None
    retry_after: int = 0


class SigninGate:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self._checks = asyncio.Semaphore(settings.review_login_concurrency)
        self._executor = ThreadPoolExecutor(settings.review_login_concurrency, thread_name_prefix="password-check")
        self._waiting = 0
        self._max_waiting = settings.review_login_waiting

    def record(self, outcome: str, client: str, name: str, retry_after: int = 0) -> None:
        metrics.SIGNINS.labels(outcome=outcome).inc()
        log.info("signin", outcome=outcome, reviewer=name[:64], client=client, retry_after=retry_after or None)

    async def attempt(self, client: str, name: str, password: str) -> Attempt:
        guards = self.runtime.guards
        subjects = [f"address:{client}", f"account:{name.lower()}"]
        retry_after = await run_in_threadpool(guards.signin_retry_after, subjects)
        if retry_after:
            self.record("throttled", client, name, retry_after)
            return Attempt("throttled", retry_after=retry_after)
        if self._waiting >= self._max_waiting:
            self.record("busy", client, name, 1)
            return Attempt("busy", retry_after=1)
        self._waiting += 1
        try:
            async with self._checks:
                account = await run_in_threadpool(self.runtime.accounts.get, name)
                matched = await asyncio.get_running_loop().run_in_executor(
                    self._executor, reviewers.password_matches, account.password_hash if account else None, password
                )
        finally:
            self._waiting -= 1
        if not matched or account is None:
            locked = await run_in_threadpool(guards.signin_failed, subjects)
            self.record("failure", client, name, locked)
            return Attempt("failure", retry_after=locked)
        await run_in_threadpool(guards.signin_succeeded, f"account:{name.lower()}")
        self.record("success", client, name)
        return Attempt("success", account=account)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
