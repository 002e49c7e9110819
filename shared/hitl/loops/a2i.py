"""The ``sagemaker-a2i-runtime`` client the loop services use.

botocore's own retries are off: the dispatcher owns the policy (throttling: bounded exponential
backoff with jitter in the task; outages, timeouts and 5xx: task retries from the queue within
``task_retry_budget``; then the dead-letter list with the reason), which botocore's hidden retries
would multiply.
The endpoint still comes from the environment (``AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME``).
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_lock = threading.Lock()
_client: Any = None

A2I_CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30)
THROTTLING_ERRORS = frozenset({"ThrottlingException", "ServiceQuotaExceededException"})


def client() -> Any:
    global _client
    with _lock:
        if _client is None:
            _client = boto3.session.Session().client("sagemaker-a2i-runtime", config=A2I_CONFIG)  # type: ignore[call-overload]
        return _client


def reset() -> None:
    global _client
    with _lock:
        _client = None


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None
