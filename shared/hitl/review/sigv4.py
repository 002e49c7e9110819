"""Verify the AWS SigV4 signature of an A2I API request with botocore's own signer.

The client signs with the signing name ``sagemaker`` (botocore's model). Checking happens in two steps:

1. :func:`check_header`, before any of the body is read: the Authorization header's shape, the
   credential scope (signing name, the service's own region), a known access key, ``X-Amz-Date``
   within the clock skew and matching the scope's date, and that ``host`` and ``x-amz-date`` are
   among the signed headers.
2. :func:`check_signature`, once the body is read (with a limit): the body is hashed here; an
   ``x-amz-content-sha256`` header, when sent, must be signed and equal that hash (``UNSIGNED-PAYLOAD``
   and streaming payloads are refused). The canonical request is rebuilt from exactly the headers
   the client listed as signed, the raw path and query and the body's own hash, signed again with
   the key's secret and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hitl.review.errors import AuthError

SIGNING_NAME = "sagemaker"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[a-z0-9;_.-]+),"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})$"
)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_AUTHORIZATION = 4096
REQUIRED_SIGNED = ("host", "x-amz-date")

SecretLookup = Callable[[str], str | None]
# A signed, random header that makes two equal calls within one second two different signatures:
# the service refuses a signature it has already seen (a replay), and botocore signs no per-call id.
REQUEST_ID_HEADER = "x-hitl-request-id"


def sign_unique_requests(client: Any) -> Any:
    """Make a boto3 client sign a fresh ``x-hitl-request-id`` into every request (and retry)."""

    def add_request_id(request: Any, **kwargs: Any) -> None:
        if REQUEST_ID_HEADER in request.headers:
            del request.headers[REQUEST_ID_HEADER]
        request.headers[REQUEST_ID_HEADER] = uuid.uuid4().hex

    client.meta.events.register("before-sign", add_request_id)
    return client


@dataclass(frozen=True)
class SignedHeader:
    """A well-formed Authorization header of a known key, within the clock skew."""

    access_key: str
    secret: str
    region: str
    amz_date: str
    signed_names: list[str]
    signature: str


def _invalid(message: str) -> AuthError:
    return AuthError("InvalidSignatureException", message)


def check_header(
    *,
    headers: Mapping[str, str],
    secret_for: SecretLookup,
    region: str,
    now: datetime,
    max_skew_seconds: int,
) -> SignedHeader:
    """Everything that can be checked without the body; AuthError (403) otherwise."""
    authorization = headers.get("authorization")
    if not authorization:
        raise AuthError("MissingAuthenticationTokenException", "Missing Authentication Token")
    if len(authorization) > MAX_AUTHORIZATION:
        raise AuthError("IncompleteSignatureException", "Authorization header too long")
    match = _AUTH_RE.match(authorization.strip())
    if not match:
        raise AuthError("IncompleteSignatureException", "Malformed Authorization header")
    try:
        access_key, date, scope_region, service, terminator = match["cred"].split("/")
    except ValueError:
        raise AuthError("IncompleteSignatureException", "Malformed credential scope") from None
    if service != SIGNING_NAME or terminator != "aws4_request":
        raise _invalid(f"Credential should be scoped to service '{SIGNING_NAME}'")
    if scope_region != region:
        raise _invalid(f"Credential should be scoped to region {region!r}, not {scope_region[:32]!r}")
    signed_names = match["signed"].split(";")
    missing = [name for name in REQUIRED_SIGNED if name not in signed_names]
    if missing:
        raise _invalid(f"The request must sign the headers {missing}")
    secret = secret_for(access_key)
    if secret is None:
        raise AuthError("UnrecognizedClientException", "The security token included in the request is invalid")
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise AuthError("IncompleteSignatureException", "X-Amz-Date is missing or malformed") from None
    if abs((now - signed_at).total_seconds()) > max_skew_seconds or not amz_date.startswith(date):
        raise _invalid("Signature expired or not yet valid")
    for name in signed_names:
        if headers.get(name) is None:
            raise AuthError("IncompleteSignatureException", f"Signed header {name!r} is missing")
    return SignedHeader(access_key, secret, scope_region, amz_date, signed_names, match["sig"])


def check_signature(
    signed: SignedHeader,
    *,
    method: str,
    host_url: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
) -> None:
    """The signature over the request and the body's own hash; AuthError (403) otherwise.

    ``headers`` must be case-insensitive (Starlette's ``Headers``); ``host_url`` is
    ``scheme://host[:port]`` as the request arrived (only the scheme is used: the signed ``Host``
    header is the client's).
    """
    body_hash = hashlib.sha256(body).hexdigest()
    declared = headers.get("x-amz-content-sha256")
    if declared is not None:
        if "x-amz-content-sha256" not in signed.signed_names:
            raise _invalid("x-amz-content-sha256 must be signed")
        if not _SHA256_RE.fullmatch(declared):
            raise _invalid("x-amz-content-sha256 must be the SHA-256 of the body; unsigned payloads are refused")
        if not hmac.compare_digest(declared, body_hash):
            raise _invalid("x-amz-content-sha256 does not match the body")
    signed_headers = {name: headers[name] for name in signed.signed_names}
    url = host_url + raw_path + (f"?{raw_query}" if raw_query else "")
    request = AWSRequest(method=method, url=url, headers=signed_headers, data=body)
    request.context["timestamp"] = signed.amz_date
    # Hash the body here whatever the scheme or header says (botocore would otherwise trust the header).
    request.context["payload_signing_enabled"] = True
    signer = SigV4Auth(Credentials(signed.access_key, signed.secret), SIGNING_NAME, signed.region)
    canonical = signer.canonical_request(request)
    if body_hash not in canonical.rsplit("\n", 1)[-1]:
        raise _invalid("payload hash mismatch")
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signed.signature):
        raise _invalid("The request signature we calculated does not match the signature you provided")


def verify(
    *,
    method: str,
    host_url: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    keys: Mapping[str, str],
    region: str,
    now: datetime,
    max_skew_seconds: int,
) -> str:
    """Both steps at once; the access key id of a validly signed request."""
    signed = check_header(
        headers=headers, secret_for=keys.get, region=region, now=now, max_skew_seconds=max_skew_seconds
    )
    check_signature(
        signed, method=method, host_url=host_url, raw_path=raw_path, raw_query=raw_query, headers=headers, body=body
    )
    return signed.access_key
