"""The reviewer portal: sign-in, the queue and task editor page, and the JSON API its script uses."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from hitl.review import reviewers
from hitl.review.errors import PortalError
from hitl.review.reviewers import Reviewer
from services.review import metrics, security
from services.review.config import Runtime

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
MAX_ANSWER_BYTES = 256 * 1024

Api = Callable[[Request, Reviewer], Awaitable[Any]]


def _require_reviewer(request: Request, runtime: Runtime, mutating: bool) -> Reviewer:
    reviewer = security.current_reviewer(request, runtime)
    if reviewer is None:
        raise PortalError(401, "Sign in first")
    if mutating:
        security.check_csrf(request, request.headers.get(security.CSRF_HEADER))
    return reviewer


def _api(runtime: Runtime, handler: Api, mutating: bool) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        status = 500
        try:
            reviewer = _require_reviewer(request, runtime, mutating)
            result = await handler(request, reviewer)
            response = result if isinstance(result, Response) else JSONResponse(result)
            status = response.status_code
            return response
        except PortalError as error:
            status = error.status
            return JSONResponse({"error": error.message}, status_code=error.status)
        finally:
            metrics.HTTP_REQUESTS.labels(area="portal", method=request.method, status=str(status)).inc()

    return endpoint


def routes(runtime: Runtime) -> list[Route]:
    service = runtime.service

    async def login_page(request: Request) -> Response:
        if security.current_reviewer(request, runtime) is not None:
            return RedirectResponse("/portal", status_code=303)
        return templates.TemplateResponse(
            request, "login.html", {"csrf_token": security.csrf_token(request), "error": None}
        )

    async def login(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=5, max_part_size=4096)
        try:
            security.check_csrf(request, str(form.get("csrf_token", "")))
        except PortalError:
            return templates.TemplateResponse(
                request,
                "login.html",
                {"csrf_token": security.csrf_token(request), "error": "Your sign-in form expired; try again."},
                status_code=403,
            )
        name, password = str(form.get("username", ""))[:64], str(form.get("password", ""))[:1024]
        reviewer = await run_in_threadpool(reviewers.authenticate, runtime.reviewers, name, password)
        if reviewer is None:
            return templates.TemplateResponse(
                request,
                "login.html",
                {"csrf_token": security.csrf_token(request), "error": "Unknown name or wrong password."},
                status_code=401,
            )
        security.sign_in(request, reviewer)
        return RedirectResponse("/portal", status_code=303)

    async def logout(request: Request) -> Response:
        form = await request.form(max_files=0, max_fields=2, max_part_size=1024)
        security.check_csrf(request, str(form.get("csrf_token", "")))
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def portal_page(request: Request) -> Response:
        reviewer = security.current_reviewer(request, runtime)
        if reviewer is None:
            return RedirectResponse("/login", status_code=303)
        return templates.TemplateResponse(
            request,
            "portal.html",
            {"reviewer": reviewer, "csrf_token": security.csrf_token(request)},
        )

    async def queue(request: Request, reviewer: Reviewer) -> Any:
        return {"tasks": await run_in_threadpool(service.queue, reviewer.name)}

    async def open_task(request: Request, reviewer: Reviewer) -> Any:
        view = await run_in_threadpool(service.open_task, reviewer.name, request.path_params["name"])
        return view.as_json()

    async def image(request: Request, reviewer: Reviewer) -> Any:
        body, content_type = await run_in_threadpool(service.task_image, reviewer.name, request.path_params["name"])
        if not content_type.startswith("image/"):
            content_type = "application/octet-stream"
        return Response(body, media_type=content_type, headers={"cache-control": "private, no-store"})

    async def answer(request: Request, reviewer: Reviewer) -> Any:
        raw = await request.body()
        if len(raw) > MAX_ANSWER_BYTES:
            raise PortalError(413, "Answer too large")
        try:
            payload = json.loads(raw)
        except ValueError:
            raise PortalError(400, "The answer is not JSON") from None
        content = payload.get("answer") if isinstance(payload, dict) else None
        await run_in_threadpool(service.submit, reviewer.name, request.path_params["name"], content)
        return {"ok": True}

    async def skip(request: Request, reviewer: Reviewer) -> Any:
        await run_in_threadpool(service.skip, reviewer.name, request.path_params["name"])
        return {"ok": True}

    def api(handler: Api, mutating: bool = False) -> Callable[[Request], Awaitable[Response]]:
        return _api(runtime, handler, mutating)

    return [
        Route("/", lambda request: RedirectResponse("/portal", status_code=303)),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/portal", portal_page, methods=["GET"]),
        Route("/portal/api/queue", api(queue), methods=["GET"]),
        Route("/portal/api/tasks/{name}", api(open_task, mutating=True), methods=["POST"]),
        Route("/portal/api/tasks/{name}/image", api(image), methods=["GET"]),
        Route("/portal/api/tasks/{name}/answer", api(answer, mutating=True), methods=["POST"]),
        Route("/portal/api/tasks/{name}/skip", api(skip, mutating=True), methods=["POST"]),
    ]
