"""Verify the AWS SigV4 signature of an A2I API request with botocore's own signer.

The client signs with the signing name ``sagemaker`` (botocore's model). The canonical request is
rebuilt from exactly the headers the client listed as signed, the raw path and the raw query, then
signed again with the secret of the access key in the credential scope; the two signatures must
match and the request time must lie within the allowed clock skew.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from hitl.review.errors import AuthError

SIGNING_NAME = "sagemaker"
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<cred>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


def verify(
    *,
    method: str,
    host_url: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    body: bytes,
    keys: Mapping[str, str],
    now: datetime,
    max_skew_seconds: int,
) -> str:
    """The access key id of a validly signed request; AuthError (403) otherwise.

    ``headers`` must be case-insensitive (Starlette's ``Headers``); ``host_url`` is
    ``scheme://host[:port]`` as the client addressed it.
    """
    authorization = headers.get("authorization")
    if not authorization:
        raise AuthError("MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTH_RE.match(authorization.strip())
    if not match:
        raise AuthError("IncompleteSignatureException", "Malformed Authorization header")
    try:
        access_key, date, region, service, terminator = match["cred"].split("/")
    except ValueError:
        raise AuthError("IncompleteSignatureException", "Malformed credential scope") from None
    if service != SIGNING_NAME or terminator != "aws4_request":
        raise AuthError("InvalidSignatureException", f"Credential should be scoped to service '{SIGNING_NAME}'")
    secret = keys.get(access_key)
    if secret is None:
        raise AuthError("UnrecognizedClientException", "The security token included in the request is invalid")
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise AuthError("IncompleteSignatureException", "X-Amz-Date is missing or malformed") from None
    if abs((now - signed_at).total_seconds()) > max_skew_seconds or not amz_date.startswith(date):
        raise AuthError("InvalidSignatureException", "Signature expired or not yet valid")

    signed_names = match["signed"].split(";")
    signed_headers = {}
    for name in signed_names:
        value = headers.get(name)
        if value is None:
            raise AuthError("IncompleteSignatureException", f"Signed header {name!r} is missing")
        signed_headers[name] = value
    url = host_url + raw_path + (f"?{raw_query}" if raw_query else "")
    request = AWSRequest(method=method, url=url, headers=signed_headers, data=body)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, secret), SIGNING_NAME, region)
    # headers_to_sign() adds Host from the URL when absent; drop everything not signed by the client.
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["sig"]):
        raise AuthError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided",
        )
    return access_key
