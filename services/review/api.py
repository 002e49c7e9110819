"""The A2I runtime API over HTTP (REST-JSON, as botocore's ``sagemaker-a2i-runtime`` model)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hitl.logs import get_logger
from hitl.review import sigv4, timefmt
from hitl.review.errors import A2IError, AuthError, InternalError, ThrottlingError, ValidationError
from hitl.review.inputs import JSONInputError, loads_strict
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
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ValidationError("Request body too large")
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ValidationError("Request body too large")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ValidationError("The request body ended early") from None
    return b"".join(chunks)


def _json(body: bytes, max_depth: int) -> dict[str, Any]:
    if not body:
        return {}
    try:
        found = loads_strict(body, max_depth)
    except JSONInputError as error:
        raise ValidationError(f"The request body is not acceptable JSON: {error}") from None
    if not isinstance(found, dict):
        raise ValidationError("The request body must be a JSON object")
    return found


Handler = Callable[[Request, bytes], Any]


class Gate:
    """SigV4 in two steps around a bounded body read, replay refusal and the per-key rate limit."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.buckets = TokenBuckets(runtime.settings.review_api_rate_per_second)
        self.bodies = asyncio.Semaphore(runtime.settings.review_api_concurrent_bodies)

    async def admit(self, request: Request) -> bytes:
        """The body of a validly signed, fresh, unthrottled request; A2IError otherwise."""
        settings = self.runtime.settings
        # Header, key, region and date first: nothing of the body is read for a request that fails them.
        signed = await run_in_threadpool(
            lambda: sigv4.check_header(
                headers=request.headers,
                secret_for=self.runtime.secret_for,
                region=settings.review_region,
                now=timefmt.now(),
                max_skew_seconds=settings.review_clock_skew_seconds,
            )
        )
        # Excess uploads are refused, not queued: a queue of slow senders would hold every caller.
        try:
            await asyncio.wait_for(self.bodies.acquire(), settings.review_api_body_wait_seconds)
        except TimeoutError:
            log.warning("a2i_bodies_busy", path=request.url.path, limit=settings.review_api_concurrent_bodies)
            raise ThrottlingError(
                f"Too many request bodies are being received at once (at most "
                f"{settings.review_api_concurrent_bodies}); retry later"
            ) from None
        metrics.API_BODIES.inc()
        try:
            body = await _body(request)
        finally:
            metrics.API_BODIES.dec()
            self.bodies.release()
        sigv4.check_signature(
            signed,
            method=request.method,
            host_url=f"{request.url.scheme}://{request.headers.get('host', '')}",
            raw_path=request.scope.get("raw_path", request.url.path.encode()).decode("latin-1"),
            raw_query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=request.headers,
            body=body,
        )
        # A replayed start, stop or delete could act again (e.g. delete a loop re-created under the same
        # name); reads change nothing, and plain boto3 signs equal polls within a second identically.
        mutating = request.method not in ("GET", "HEAD")
        if mutating and not await run_in_threadpool(
            self.runtime.guards.first_use, signed.signature, 2 * settings.review_clock_skew_seconds + 60
        ):
            raise AuthError("InvalidSignatureException", "This signed request was already received (replay)")
        if not self.buckets.allow(signed.access_key):
            raise ThrottlingError("Rate exceeded")
        return body


def _endpoint(gate: Gate, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        status = 500
        try:
            body = await gate.admit(request)
            result = await run_in_threadpool(handler, request, body)
            status = 200
            return JSONResponse(result, headers={"x-amzn-RequestId": str(uuid.uuid4())})
        except A2IError as error:
            status = error.status
            if status == 403:
                log.info("a2i_auth_refused", path=request.url.path, code=error.code, reason=error.message[:120])
            return error_response(error)
        except Exception:
            log.exception("a2i_api_error", path=request.url.path)
            return error_response(InternalError("Internal service error"))
        finally:
            metrics.HTTP_REQUESTS.labels(area="a2i", method=request.method, status=str(status)).inc()

    return endpoint


def routes(runtime: Runtime) -> list[Route]:
    service = runtime.service
    gate = Gate(runtime)
    depth = runtime.settings.review_max_json_depth

    def start(request: Request, body: bytes) -> Any:
        result = service.start(_json(body, depth))
        metrics.LOOPS_STARTED.inc()
        return result

    def list_loops(request: Request, body: bytes) -> Any:
        return service.list_loops(request.query_params)

    def stop(request: Request, body: bytes) -> Any:
        return service.stop(_json(body, depth))

    def describe(request: Request, body: bytes) -> Any:
        return service.describe(request.path_params["name"])

    def delete(request: Request, body: bytes) -> Any:
        return service.delete(request.path_params["name"])

    def wrap(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        return _endpoint(gate, handler)

    return [
        Route("/human-loops", wrap(start), methods=["POST"]),
        Route("/human-loops", wrap(list_loops), methods=["GET"]),
        Route("/human-loops/stop", wrap(stop), methods=["POST"]),
        Route("/human-loops/{name}", wrap(describe), methods=["GET"]),
        Route("/human-loops/{name}", wrap(delete), methods=["DELETE"]),
    ]
