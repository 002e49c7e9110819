"""The A2I runtime API over HTTP (REST-JSON, as botocore's ``sagemaker-a2i-runtime`` model)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hitl.logs import get_logger
from hitl.review import sigv4, timefmt
from hitl.review.errors import A2IError, InternalError, ThrottlingError, ValidationError
from services.review import metrics
from services.review.config import Runtime
from services.review.throttle import TokenBuckets

log = get_logger()
# Every valid InputContent fits: JSON may escape a character as up to 6 (\uXXXX), plus the envelope.
MAX_BODY_BYTES = 6 * 3_145_728 + 64 * 1024


def error_response(error: A2IError) -> JSONResponse:
    return JSONResponse(
        {"__type": error.code, "Message": error.message, "message": error.message},
        status_code=error.status,
        headers={"x-amzn-ErrorType": error.code, "x-amzn-RequestId": str(uuid.uuid4())},
    )


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ValidationError("Request body too large")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ValidationError("Request body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        found = json.loads(body)
    except ValueError:
        raise ValidationError("The request body is not valid JSON") from None
    if not isinstance(found, dict):
        raise ValidationError("The request body must be a JSON object")
    return found


Handler = Callable[[Request, bytes], Any]


def _authorise(request: Request, body: bytes, runtime: Runtime, buckets: TokenBuckets) -> None:
    """SigV4 check against the configured keys, then the per-key rate limit."""
    access_key = sigv4.verify(
        method=request.method,
        host_url=f"{request.url.scheme}://{request.headers.get('host', '')}",
        raw_path=request.scope.get("raw_path", request.url.path.encode()).decode("latin-1"),
        raw_query=request.scope.get("query_string", b"").decode("latin-1"),
        headers=request.headers,
        body=body,
        keys=runtime.api_keys,
        now=timefmt.now(),
        max_skew_seconds=runtime.settings.review_clock_skew_seconds,
    )
    if not buckets.allow(access_key):
        raise ThrottlingError("Rate exceeded")


def _endpoint(runtime: Runtime, buckets: TokenBuckets, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        status = 500
        try:
            body = await _body(request)
            _authorise(request, body, runtime, buckets)
            result = await run_in_threadpool(handler, request, body)
            status = 200
            return JSONResponse(result, headers={"x-amzn-RequestId": str(uuid.uuid4())})
        except A2IError as error:
            status = error.status
            return error_response(error)
        except Exception:
            log.exception("a2i_api_error", path=request.url.path)
            return error_response(InternalError("Internal service error"))
        finally:
            metrics.HTTP_REQUESTS.labels(area="a2i", method=request.method, status=str(status)).inc()

    return endpoint


def routes(runtime: Runtime) -> list[Route]:
    service = runtime.service
    buckets = TokenBuckets(runtime.settings.review_api_rate_per_second)

    def start(request: Request, body: bytes) -> Any:
        result = service.start(_json(body))
        metrics.LOOPS_STARTED.inc()
        return result

    def list_loops(request: Request, body: bytes) -> Any:
        return service.list_loops(request.query_params)

    def stop(request: Request, body: bytes) -> Any:
        return service.stop(_json(body))

    def describe(request: Request, body: bytes) -> Any:
        return service.describe(request.path_params["name"])

    def delete(request: Request, body: bytes) -> Any:
        return service.delete(request.path_params["name"])

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return _endpoint(runtime, buckets, handler)

    return [
        Route("/human-loops", wrap(start), methods=["POST"]),
        Route("/human-loops", wrap(list_loops), methods=["GET"]),
        Route("/human-loops/stop", wrap(stop), methods=["POST"]),
        Route("/human-loops/{name}", wrap(describe), methods=["GET"]),
        Route("/human-loops/{name}", wrap(delete), methods=["DELETE"]),
    ]
