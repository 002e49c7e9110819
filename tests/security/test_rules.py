"""The security rules that need no running service: late answers, sign-in backoff, payload binding,
Secure cookies and HSTS off loopback, strict JSON, image keys."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route

from hitl.review import assignment, inputs, sigv4
from hitl.review.errors import AuthError, PortalError, ValidationError
from hitl.review.guards import backoff_seconds
from hitl.settings import Settings
from services.review.config import secure_cookies
from services.review.security import SecurityHeaders
from tests.review.test_domain import BOX_ANSWER, T0, make_loop

BODY = b'{"HumanLoopName":"a"}'
EVIL = b'{"HumanLoopName":"b"}'


def test_answer_after_the_claim_time_limit_is_refused_even_if_nobody_took_the_task() -> None:
    loop = make_loop()  # TaskTimeLimitInSeconds 60
    assignment.claim(loop, "alice", T0)
    with pytest.raises(PortalError) as late:
        assignment.record_answer(loop, "alice", BOX_ANSWER, T0 + timedelta(seconds=61))
    assert late.value.status == 409
    assignment.claim(loop, "alice", T0 + timedelta(seconds=62))  # opening it again starts a new claim
    assignment.record_answer(loop, "alice", BOX_ANSWER, T0 + timedelta(seconds=70))


def test_answer_after_the_loop_deadline_is_refused_before_the_sweeper_runs() -> None:
    loop = make_loop(lifetime=30)
    assignment.claim(loop, "alice", T0 + timedelta(seconds=5))
    with pytest.raises(PortalError, match="expired"):
        assignment.record_answer(loop, "alice", BOX_ANSWER, T0 + timedelta(seconds=31))
    assert not assignment.holds_claim(loop, "alice", T0 + timedelta(seconds=31))


def test_team_rule() -> None:
    flow = make_loop().flow
    assert flow.allows([])
    red = flow.model_copy(update={"teams": ["red"]})
    assert red.allows(["blue", "red"])
    assert not red.allows(["blue"])
    assert not red.allows([])


def test_backoff_doubles_after_the_free_failures_and_is_capped() -> None:
    found = [backoff_seconds(n, free=5, base=2.0, cap=60.0) for n in range(1, 12)]
    assert found == [0, 0, 0, 0, 0, 2, 4, 8, 16, 32, 60]


def _botocore_signed(body: bytes, declared: str) -> AWSRequest:
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:9/human-loops",
        data=body,
        headers={"Content-Type": "application/json", "X-Amz-Content-SHA256": declared},
    )
    SigV4Auth(Credentials("AKID", "s3cret"), "sagemaker", "us-east-1").add_auth(request)
    return request


def _verify(request: AWSRequest, body: bytes, region: str = "us-east-1") -> str:
    return sigv4.verify(
        method="POST",
        host_url="http://127.0.0.1:9",
        raw_path="/human-loops",
        raw_query="",
        headers=Headers({"host": "127.0.0.1:9", **dict(request.headers.items())}),
        body=body,
        keys={"AKID": "s3cret"},
        region=region,
        now=datetime.now(UTC),
        max_skew_seconds=300,
    )


def test_sigv4_binds_the_body_whatever_x_amz_content_sha256_says() -> None:
    """Finding 2, with botocore's own signer: its canonical request trusts the header's hash."""
    good = _botocore_signed(BODY, hashlib.sha256(BODY).hexdigest())
    assert _verify(good, BODY) == "AKID"
    with pytest.raises(AuthError, match="does not match the body"):
        _verify(good, EVIL)
    with pytest.raises(AuthError, match="unsigned"):
        _verify(_botocore_signed(EVIL, "UNSIGNED-PAYLOAD"), EVIL)
    with pytest.raises(AuthError, match="region"):
        _verify(good, BODY, region="eu-west-1")


def test_secure_cookies_off_loopback() -> None:
    assert not secure_cookies(Settings(review_host="127.0.0.1"))
    assert not secure_cookies(Settings(review_host="::1"))
    assert secure_cookies(Settings(review_host="0.0.0.0"))
    assert secure_cookies(Settings(review_host="review.example.com"))
    assert not secure_cookies(Settings(review_host="0.0.0.0", review_secure_cookies=False))


def test_hsts_and_no_store_headers() -> None:
    app = Starlette(routes=[Route("/x", lambda request: JSONResponse({"a": 1}))])

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=SecurityHeaders(app, hsts=True))
        async with httpx.AsyncClient(transport=transport, base_url="http://review") as client:
            return await client.get("/x")

    response = asyncio.run(get())
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": -Infinity}', "[" * 100 + "]" * 100, "[" * 99999 + "]" * 99999])
def test_strict_json_refuses_non_finite_numbers_and_depth(text: str) -> None:
    with pytest.raises(inputs.JSONInputError):
        inputs.loads_strict(text, 32)


def test_image_keys() -> None:
    keys = inputs.ImageKeys(frozenset({"b"}), (), ("models/", "datasets/"))
    keys.check("b", "images/a.png")
    keys.check("b", "unlabelled/a.png")
    for key in ("models/m.onnx", "images/../models/m.onnx", "/images/a.png", "images//a.png", "images/a\x00.png"):
        with pytest.raises(ValidationError):
            keys.check("b", key)
    only = inputs.ImageKeys(frozenset({"b"}), ("images/",))
    with pytest.raises(ValidationError):
        only.check("b", "unlabelled/a.png")
    assert inputs.raster_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert inputs.raster_type(b"<svg xmlns=...") is None


def test_the_api_rate_limit_is_on_by_default() -> None:
    assert Settings().review_api_rate_per_second > 0
