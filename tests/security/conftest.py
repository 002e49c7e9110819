"""Fixtures of the hostile-request tests: one review service process with teams, roles and a metrics
token, its accounts and flows, and helpers that sign A2I requests by hand so they can be tampered with."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hitl.review.reviewers import hash_password
from tests.review.conftest import (  # noqa: F401 - fixtures shared with the review tests
    ACCOUNT,
    BUCKET,
    REGION,
    ReviewProcess,
    aws_env,
    flow,
    flow_arn,
    review_files,
    start_review,
)

METRICS_TOKEN = "metrics-" + secrets.token_hex(8)
# name -> (roles, teams)
ACCOUNTS: dict[str, tuple[list[str], list[str]]] = {
    "rita": (["reviewer"], ["red"]),
    "bert": (["reviewer"], ["blue"]),
    "olga": (["reviewer", "operator"], ["red"]),
    "nora": (["operator"], []),
    "vera": (["reviewer"], ["red"]),
    "paul": (["reviewer"], ["red"]),
    "gone": (["reviewer"], ["red"]),
}
FLOWS = [
    flow("sec-red", Teams=["red"]),
    flow("sec-open"),
    flow("sec-verify", TaskType="LabelVerification", Teams=["red"]),
    flow("sec-classes", TaskType="ImageClassification", Labels=["face", "no-face"], Teams=["red"]),
    flow("sec-short", TaskAvailabilityLifetimeInSeconds=3, Teams=["red"]),
]
SVG_KEY = "images/security/evil.svg"
HTML_AS_PNG_KEY = "images/security/page.png"


@dataclass
class Tally:
    """Every hostile request and its answer, for the count the suite promises (at least 60)."""

    answers: list[tuple[str, int]] = field(default_factory=list)


TALLY = Tally()


def refused(what: str, response: httpx.Response, status: int, contains: str = "") -> httpx.Response:
    """Assert the answer a client should get: exactly ``status`` (4xx) and a readable reason."""
    assert 400 <= status < 500
    assert response.status_code == status, f"{what}: {response.status_code} {response.text[:300]}"
    text = response.text
    assert text.strip(), f"{what}: empty error body"
    if contains:
        assert contains.lower() in text.lower(), f"{what}: {text[:300]}"
    TALLY.answers.append((what, response.status_code))
    return response


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY.answers:
        statuses: dict[int, int] = {}
        for _, status in TALLY.answers:
            statuses[status] = statuses.get(status, 0) + 1
        terminalreporter.write_line(f"hostile requests refused: {len(TALLY.answers)} {dict(sorted(statuses.items()))}")


@dataclass
class SecurityService:
    process: ReviewProcess
    passwords: dict[str, str]
    redis_url: str
    key_prefix: str

    @property
    def url(self) -> str:
        return self.process.url


@pytest.fixture(scope="session")
def security_service(start_review: Any, run_dir: Path, aws_env: dict[str, Any], settings: Any) -> SecurityService:  # noqa: F811
    folder = run_dir / "security"
    folder.mkdir(parents=True, exist_ok=True)
    passwords = {name: secrets.token_urlsafe(16) for name in ACCOUNTS}
    entries = [
        {"name": n, "password_hash": hash_password(passwords[n]), "roles": roles, "teams": teams}
        for n, (roles, teams) in ACCOUNTS.items()
    ]
    (folder / "reviewers.json").write_text(json.dumps({"reviewers": entries}))
    (folder / "flows.json").write_text(json.dumps({"FlowDefinitions": FLOWS}))
    s3 = aws_env["s3"]
    s3.put_object(
        Bucket=BUCKET, Key=SVG_KEY, ContentType="image/svg+xml",
        Body=b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    )
    s3.put_object(Bucket=BUCKET, Key=HTML_AS_PNG_KEY, ContentType="image/png", Body=b"<html><script>x()</script>")
    s3.put_object(Bucket=BUCKET, Key="models/secret/model.onnx", Body=b"weights")
    process = start_review(
        "security",
        HITL_REVIEW_REVIEWERS_FILE=str(folder / "reviewers.json"),
        HITL_REVIEW_FLOW_DEFINITIONS_FILE=str(folder / "flows.json"),
        HITL_REVIEW_METRICS_TOKEN=METRICS_TOKEN,
        # The sweeper would expire loops itself; left idle, the answer path must refuse late answers.
        HITL_REVIEW_SWEEP_INTERVAL="3600",
        # Tests present client addresses through X-Forwarded-For, as the Ingress does.
        HITL_REVIEW_FORWARDED_ALLOW_IPS="127.0.0.1",
        HITL_REVIEW_SIGNIN_FREE_FAILURES="3",
        HITL_REVIEW_SIGNIN_BACKOFF_SECONDS="30",
    )
    return SecurityService(process, passwords, settings.redis_url, "hitltest-security")


def amz_now() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def sign(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    headers: dict[str, str] | None = None,
    key: str = "testing",
    secret: str = "testing",
    region: str = REGION,
    service: str = "sagemaker",
    amz_date: str | None = None,
    unique: bool = True,
) -> dict[str, str]:
    """Headers of a SigV4-signed request, as botocore computes them (host and x-amz-date signed)."""
    amz_date = amz_date or amz_now()
    all_headers = {"Content-Type": "application/x-amz-json-1.1", **(headers or {}), "X-Amz-Date": amz_date}
    if unique:
        all_headers["X-Hitl-Request-Id"] = secrets.token_hex(8)
    request = AWSRequest(method=method, url=url, data=body, headers=all_headers)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key, secret), service, region)
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    names = signer.signed_headers(signer.headers_to_sign(request))
    scope = f"{key}/{amz_date[:8]}/{region}/{service}/aws4_request"
    return {
        **all_headers,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={names}, Signature={signature}",
    }


def start_body(name: str, flow_name: str, content: dict[str, Any] | str) -> bytes:
    return json.dumps(
        {
            "HumanLoopName": name,
            "FlowDefinitionArn": flow_arn(flow_name),
            "HumanLoopInput": {"InputContent": content if isinstance(content, str) else json.dumps(content)},
        }
    ).encode()


Signer = Callable[..., dict[str, str]]
__all__ = ["ACCOUNT", "refused", "sign", "start_body"]
