"""boto3 clients, one per service name and process.

No endpoint is passed here: boto3 takes ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` from
the environment, which is the whole difference between the local stack and AWS.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_lock = threading.Lock()
_clients: dict[str, Any] = {}

# Standard retry mode backs off with jitter on throttling and transient errors; callers add their
# own policy only where an error is not transient for botocore (e.g. ResourceNotReady).
CLIENT_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=30)


def client(service: str) -> Any:
    with _lock:
        found = _clients.get(service)
        if found is None:
            found = boto3.session.Session().client(service, config=CLIENT_CONFIG)  # type: ignore[call-overload]
            _clients[service] = found
        return found


def reset_clients() -> None:
    """Forget cached clients (after the environment changes, e.g. in tests or after fork)."""
    with _lock:
        _clients.clear()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); ValueError on anything else."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise ValueError(f"s3:// URI needs a bucket and a key: {uri!r}")
    return bucket, key
