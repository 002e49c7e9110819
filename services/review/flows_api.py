"""The flow-definition admin API: create, list, describe and update flows stored in Redis.

Signed like the A2I API (SigV4, signing name ``sagemaker``, the same keys); reading needs any valid
key, creating and changing needs one listed in ``HITL_REVIEW_ADMIN_ACCESS_KEYS``.

| ``POST /flow-definitions`` | CreateFlowDefinition → ``{"FlowDefinitionArn"}`` |
| ``GET /flow-definitions`` | ListFlowDefinitions → ``{"FlowDefinitionSummaries", "NextToken"?}`` |
| ``GET /flow-definitions/{name}`` | DescribeFlowDefinition |
| ``PATCH /flow-definitions/{name}`` | partial update → the new description |
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hitl.review.errors import AuthError
from services.review.api import Handler, _endpoint, _json
from services.review.config import Runtime
from services.review.throttle import TokenBuckets

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


def _access_key(request: Request) -> str:
    """The access key of a request whose signature was already verified."""
    found = _CREDENTIAL.search(request.headers.get("authorization", ""))
    return found.group(1) if found else ""


def routes(runtime: Runtime) -> list[Route]:
    service = runtime.service
    buckets = TokenBuckets(runtime.settings.review_api_rate_per_second)
    admins = frozenset(runtime.settings.review_admin_access_keys)

    def require_admin(request: Request) -> None:
        if _access_key(request) not in admins:
            raise AuthError(
                "AccessDeniedException",
                "This access key may read flow definitions but not change them (HITL_REVIEW_ADMIN_ACCESS_KEYS)",
            )

    def create(request: Request, body: bytes) -> Any:
        require_admin(request)
        return service.create_flow(_json(body))

    def list_flows(request: Request, body: bytes) -> Any:
        return service.list_flows(request.query_params)

    def describe(request: Request, body: bytes) -> Any:
        return service.describe_flow(request.path_params["name"])

    def update(request: Request, body: bytes) -> Any:
        require_admin(request)
        return service.update_flow(request.path_params["name"], _json(body))

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return _endpoint(runtime, buckets, handler)

    return [
        Route("/flow-definitions", wrap(create), methods=["POST"]),
        Route("/flow-definitions", wrap(list_flows), methods=["GET"]),
        Route("/flow-definitions/{name}", wrap(describe), methods=["GET"]),
        Route("/flow-definitions/{name}", wrap(update), methods=["PATCH"]),
    ]
