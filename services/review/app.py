"""The ASGI application: A2I API, portal, operator page, probes, metrics and the sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from hitl.logs import get_logger
from hitl.review.errors import PortalError
from hitl.settings import Settings
from services.review import api, flows_api, metrics, operator, portal
from services.review.config import Runtime, build, flow_definitions
from services.review.security import SecurityHeaders

log = get_logger()


async def _sweeper(runtime: Runtime) -> None:
    """Finish stops, expire loops, retry pending output.json writes and drain the event outbox."""
    service = runtime.service
    while True:
        try:
            await run_in_threadpool(service.sweep)
            counts = await run_in_threadpool(service.store.status_counts)
            for status, count in counts.items():
                metrics.LOOPS.labels(status=status).set(count)
            metrics.OUTBOX.set(await run_in_threadpool(service.store.outbox_length))
        except Exception:
            log.exception("sweep_failed")
        await asyncio.sleep(runtime.settings.review_sweep_interval)


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(settings: Settings, runtime: Runtime | None = None) -> Starlette:
    runtime = runtime or build(settings)
    # Configured flows are seeds: registered now and again whenever they go missing from Redis.
    runtime.service.flows.seed(flow_definitions(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(_sweeper(runtime))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        try:
            await run_in_threadpool(runtime.service.store.ping)
            await run_in_threadpool(runtime.service.publisher.ready, settings.bucket)
        except Exception as error:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"ready": False, "error": type(error).__name__}, status_code=503)
        return JSONResponse({"ready": True})

    async def metrics_endpoint(request: Request) -> Response:
        token = settings.review_metrics_token
        if token:
            if request.headers.get("authorization") != f"Bearer {token}":
                return PlainTextResponse("unauthorized", status_code=401)
        elif not _loopback(request):
            return PlainTextResponse("forbidden", status_code=403)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def portal_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PortalError)
        return PlainTextResponse(exc.message, status_code=exc.status)

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        *api.routes(runtime),
        *flows_api.routes(runtime),
        *portal.routes(runtime),
        *operator.routes(runtime),
        Mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=runtime.session_secret,
            session_cookie="hitl_review_session",
            max_age=settings.review_session_max_age,
            same_site="strict",
            https_only=settings.review_secure_cookies,
        ),
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={PortalError: portal_error},
    )
