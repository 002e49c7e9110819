"""With Secure cookies on (any service not bound to loopback, or set explicitly), the session cookie
carries Secure, every response carries HSTS, and the portal client still signs in over loopback HTTP
as browsers do (they treat http://localhost as a secure origin)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hitl.review.portal_client import PortalClient
from tests.security.conftest import SecurityService

pytestmark = pytest.mark.integration


def test_secure_cookies_and_hsts(start_review: Any, security_service: SecurityService) -> None:
    process = start_review(
        "secure",
        HITL_REVIEW_REVIEWERS_FILE=security_service.process.env["HITL_REVIEW_REVIEWERS_FILE"],
        HITL_REVIEW_SECURE_COOKIES="true",
    )
    page = httpx.get(process.url + "/login")
    assert page.headers["strict-transport-security"].startswith("max-age=")
    cookie = page.headers["set-cookie"].lower()
    assert "; secure" in cookie
    assert "samesite=strict" in cookie
    assert "httponly" in cookie
    client = PortalClient(process.url)
    client.sign_in("rita", security_service.passwords["rita"])
    assert client.queue() == []
