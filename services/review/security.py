"""Portal sessions, CSRF and response headers.

The cookie (Starlette's signed session, keyed by the secret all replicas share) carries only a
random session id and, before sign-in, the sign-in form's one-use token. The session itself lives
in Redis (:class:`hitl.review.accounts.AccountStore`), so logout, a password change or a removed
account end it on every replica. Each session has a CSRF token that every portal POST must echo
(form field ``csrf_token`` or header ``X-CSRF-Token``); the sign-in form's token is consumed by
the first POST that carries it.
"""

from __future__ import annotations

import hmac
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hitl.review.accounts import Account, Session
from hitl.review.errors import PortalError
from services.review.config import Runtime

CSRF_HEADER = "x-csrf-token"
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"


def constant_time_equal(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def csrf_token(request: Request) -> str:
    """The signed-in session's CSRF token (set by :func:`current_reviewer`)."""
    session: Session | None = getattr(request.state, "review_session", None)
    return session.csrf if session is not None else ""


def check_csrf(request: Request, submitted: str | None) -> None:
    session: Session | None = getattr(request.state, "review_session", None)
    if session is None or not submitted or not constant_time_equal(session.csrf, submitted):
        raise PortalError(403, "Invalid or missing CSRF token")


async def login_token(request: Request, runtime: Runtime) -> str:
    """A fresh one-use token for a sign-in form, remembered in the cookie and in Redis."""
    token = await run_in_threadpool(runtime.accounts.issue_login_token, runtime.settings.review_login_token_seconds)
    request.session["login"] = token
    return token


async def consume_login_token(request: Request, runtime: Runtime, submitted: str) -> bool:
    expected = request.session.pop("login", None)
    if not isinstance(expected, str) or not constant_time_equal(expected, submitted):
        return False
    return bool(await run_in_threadpool(runtime.accounts.consume_login_token, submitted))


async def sign_in(request: Request, runtime: Runtime, account: Account) -> None:
    session = await run_in_threadpool(
        runtime.accounts.create_session, account.name, runtime.settings.review_session_max_age
    )
    request.session.clear()  # a fresh session on sign-in: no fixation
    request.session["sid"] = session.sid
    request.state.review_session = session


async def sign_out(request: Request, runtime: Runtime) -> None:
    sid = request.session.get("sid")
    if isinstance(sid, str):
        await run_in_threadpool(runtime.accounts.end_session, sid)
    request.session.clear()


async def current_reviewer(request: Request, runtime: Runtime) -> Account | None:
    sid = request.session.get("sid")
    if not isinstance(sid, str):
        return None

    def lookup() -> tuple[Session | None, Account | None]:
        session = runtime.accounts.get_session(sid)
        if session is None:
            return None, None
        if time.time() - session.signed_in_at > runtime.settings.review_session_max_age:
            runtime.accounts.end_session(sid)
            return None, None
        return session, runtime.accounts.get(session.reviewer)

    session, account = await run_in_threadpool(lookup)
    if session is None or account is None:  # ended, expired, or the account was removed
        request.session.pop("sid", None)
        return None
    request.state.review_session = session
    return account


class SecurityHeaders:
    """Headers every response carries: no framing, no sniffing, same-origin scripts and styles,
    no caching of pages and JSON, and HSTS when the service is reached over HTTPS."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                ]
                pages = (b"text/html", b"application/json", b"text/plain")
                if b"cache-control" not in names and content_type.startswith(pages):
                    headers.append((b"cache-control", b"no-store"))
                if self.hsts:
                    headers.append((b"strict-transport-security", HSTS.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
