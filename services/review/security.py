"""Portal sessions and CSRF: who is signed in, for how long, and whether a POST came from our pages.

Sessions are Starlette's signed cookies; besides the cookie's own max-age, ``signed_in_at`` bounds a
session absolutely, since the cookie is re-issued on every response. Each session carries a random
CSRF token that every portal POST must echo (form field ``csrf_token`` or header ``X-CSRF-Token``).
"""

from __future__ import annotations

import hmac
import secrets
import time

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hitl.review.errors import PortalError
from hitl.review.reviewers import Reviewer
from services.review.config import Runtime

CSRF_HEADER = "x-csrf-token"
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not submitted or not hmac.compare_digest(expected, submitted):
        raise PortalError(403, "Invalid or missing CSRF token")


def sign_in(request: Request, reviewer: Reviewer) -> None:
    request.session.clear()  # a fresh session on sign-in: no fixation
    request.session.update(
        {"reviewer": reviewer.name, "signed_in_at": int(time.time()), "csrf": secrets.token_urlsafe(32)}
    )


def current_reviewer(request: Request, runtime: Runtime) -> Reviewer | None:
    name = request.session.get("reviewer")
    started = request.session.get("signed_in_at")
    if not isinstance(name, str) or not isinstance(started, int):
        return None
    if time.time() - started > runtime.settings.review_session_max_age:
        request.session.clear()
        return None
    return runtime.reviewers.get(name)  # removed from configuration: signed out


class SecurityHeaders:
    """Headers every response carries: no framing, no sniffing, same-origin scripts and styles."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
