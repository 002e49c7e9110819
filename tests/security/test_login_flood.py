"""A sign-in flood of 500 attempts from 40 concurrent clients against a running review service:
memory stays bounded, the flood is answered 429 once its budget is spent, and a signed-in reviewer
is still served. The full figures come from ``bench/bench_security.py`` (bench/results/security.json);
this test holds the bounds, with a smaller failure budget so that it runs in about a minute."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bench.login_flood import flood
from tests.security.conftest import SecurityService
from tests.security.test_hostile_requests import Portal

pytestmark = pytest.mark.integration
RSS_LIMIT_MB = 300


@pytest.mark.timeout(900)
def test_login_flood_is_bounded_and_the_portal_keeps_serving(
    start_review: Any, security_service: SecurityService
) -> None:
    process = start_review(
        "flood",
        HITL_REVIEW_REVIEWERS_FILE=security_service.process.env["HITL_REVIEW_REVIEWERS_FILE"],
        HITL_REVIEW_FORWARDED_ALLOW_IPS="127.0.0.1",
        HITL_REVIEW_SIGNIN_FREE_FAILURES="2",
        HITL_REVIEW_SIGNIN_BACKOFF_SECONDS="60",
    )
    pid = process.group.pid(process.name)
    assert pid is not None
    reviewer = Portal(process.url).sign_in("rita", security_service.passwords["rita"])
    result = flood(process.url, pid, reviewer.http, target="olga", attempts=500, clients=40)
    assert max(result.rss_peak_hwm_mb, result.rss_peak_sampled_mb) < RSS_LIMIT_MB, result
    assert result.share_429 >= 0.5, result
    # Nothing but refusals: wrong passwords (401) until the budget is spent, then 429.
    assert set(result.statuses) <= {"401", "429"}, result
    assert result.first_429_after is not None, result
    assert result.first_429_after <= 130, result
    assert result.queue_requests >= 1
    assert result.queue_ok == result.queue_requests, result
    assert result.signins_total.get("failure", 0) <= 40 * 3 + 10, result  # password checks stay bounded
    locked = httpx.get(process.url + "/metrics").text
    assert 'hitl_review_signins_total{outcome="throttled"}' in locked
