"""Which failures are worth retrying, and how long to wait before the next try.

A transient failure is one the same request may survive a little later: a connection refused or
reset, a timeout, an HTTP 5xx, throttling, Redis restarting. Anything else (bad input, a missing
permission) fails the same way every time and goes straight to the dead-letter list.
"""

from __future__ import annotations

import random
import socket

import redis
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from kombu.exceptions import OperationalError

TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceQuotaExceededException",
        "ProvisionedThroughputExceededException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "InternalServerException",
    }
)


class TransientFailure(RuntimeError):
    """Raised by task code for a condition that should clear by itself (e.g. a record S3 has not
    shown yet); ``reason`` is the stable code recorded if the retry budget runs out."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status else None
    return None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientFailure):
        return True
    if isinstance(exc, ClientError):
        status = http_status(exc) or 0
        return error_code(exc) in TRANSIENT_CODES or status >= 500 or status == 429
    return isinstance(
        exc,
        BotoConnectionError
        | EndpointConnectionError
        | ConnectionClosedError
        | ReadTimeoutError
        | HTTPClientError
        | redis.exceptions.ConnectionError
        | redis.exceptions.TimeoutError
        | OperationalError
        | ConnectionError
        | TimeoutError
        | socket.timeout,
    )


def reason_of(exc: BaseException) -> str:
    """A short, countable reason: the AWS error code, the TransientFailure reason, else the type."""
    if isinstance(exc, TransientFailure):
        return exc.reason
    code = error_code(exc)
    if code:
        return code
    return type(exc).__name__


def backoff(retry: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half the capped delay, plus up to the other half at
    random, so many tasks failing together do not retry together."""
    capped = min(maximum, initial * (2**retry))
    return float(capped / 2 + (rng or random).uniform(0, capped / 2))
