"""The reviewer portal: sign-in, the queue and task editor page, and the JSON API its script uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from hitl.review.accounts import Account
from hitl.review.errors import PortalError
from hitl.review.inputs import JSONInputError, loads_strict
from hitl.review.reviewers import NAME_RE
from services.review import metrics, security
from services.review.config import Runtime
from services.review.signin import SigninGate

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
MAX_ANSWER_BYTES = 256 * 1024

MAX_FORM_BYTES = 8 * 1024

Api = Callable[[Request, Account], Awaitable[Any]]


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PortalError(413, f"Request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PortalError(413, f"Request body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise PortalError(400, "The request body ended early") from None
    return b"".join(chunks)


async def _require_reviewer(request: Request, runtime: Runtime, mutating: bool) -> Account:
    reviewer = await security.current_reviewer(request, runtime)
    if reviewer is None:
        raise PortalError(401, "Sign in first")
    if mutating:
        security.check_csrf(request, request.headers.get(security.CSRF_HEADER))
    if not reviewer.is_reviewer:
        raise PortalError(403, "Reviewing tasks needs the reviewer role")
    return reviewer


def _api(runtime: Runtime, handler: Api, mutating: bool) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        status = 500
        try:
            reviewer = await _require_reviewer(request, runtime, mutating)
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


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def routes(runtime: Runtime) -> list[Route]:
    service = runtime.service
    gate = SigninGate(runtime)

    async def login_form(
        request: Request, error: str | None, status: int, headers: dict[str, str] | None = None
    ) -> Response:
        token = await security.login_token(request, runtime)
        return templates.TemplateResponse(
            request, "login.html", {"csrf_token": token, "error": error}, status_code=status, headers=headers
        )

    async def login_page(request: Request) -> Response:
        if await security.current_reviewer(request, runtime) is not None:
            return RedirectResponse("/portal", status_code=303)
        return await login_form(request, None, 200)

    async def login(request: Request) -> Response:
        client = _client(request)
        try:
            raw = await read_limited(request, MAX_FORM_BYTES)
        except PortalError as error:
            gate.record("invalid_form", client, "")
            return await login_form(request, error.message, error.status)
        try:
            fields = parse_qs(raw.decode("utf-8"), max_num_fields=5, strict_parsing=False)
        except (UnicodeDecodeError, ValueError):
            fields = {}
        form = {key: values[0] for key, values in fields.items() if values}
        if not await security.consume_login_token(request, runtime, form.get("csrf_token", "")):
            gate.record("invalid_form", client, "")
            return await login_form(request, "Your sign-in form expired or was already used; try again.", 403)
        name, password = form.get("username", "")[:64], form.get("password", "")[:1024]
        if not NAME_RE.fullmatch(name) or not password:
            gate.record("invalid_form", client, name)
            return await login_form(request, "Unknown name or wrong password.", 401)
        attempt = await gate.attempt(client, name, password)
        if attempt.outcome in ("throttled", "busy"):
            wait = max(1, attempt.retry_after)
            return await login_form(
                request, f"Too many sign-in attempts; try again in {wait} s.", 429, {"Retry-After": str(wait)}
            )
        if attempt.account is None:
            return await login_form(request, "Unknown name or wrong password.", 401)
        await security.sign_in(request, runtime, attempt.account)
        return RedirectResponse("/portal", status_code=303)

    async def logout(request: Request) -> Response:
        if await security.current_reviewer(request, runtime) is None:
            return RedirectResponse("/login", status_code=303)
        raw = await read_limited(request, MAX_FORM_BYTES)
        try:
            fields = parse_qs(raw.decode("utf-8", errors="replace"), max_num_fields=5)
        except ValueError:
            raise PortalError(400, "Malformed form") from None
        security.check_csrf(request, (fields.get("csrf_token") or [""])[0])
        await security.sign_out(request, runtime)
        return RedirectResponse("/login", status_code=303)

    async def portal_page(request: Request) -> Response:
        reviewer = await security.current_reviewer(request, runtime)
        if reviewer is None:
            return RedirectResponse("/login", status_code=303)
        return templates.TemplateResponse(
            request,
            "portal.html",
            {"reviewer": reviewer, "csrf_token": security.csrf_token(request)},
        )

    async def queue(request: Request, reviewer: Account) -> Any:
        return {"tasks": await run_in_threadpool(service.queue, reviewer.name, reviewer.teams)}

    async def open_task(request: Request, reviewer: Account) -> Any:
        view = await run_in_threadpool(service.open_task, reviewer.name, request.path_params["name"], reviewer.teams)
        return view.as_json()

    async def image(request: Request, reviewer: Account) -> Any:
        name = request.path_params["name"]
        body, content_type = await run_in_threadpool(service.task_image, reviewer.name, name, reviewer.teams)
        extension = content_type.rsplit("/", 1)[-1]
        return Response(
            body,
            media_type=content_type,
            headers={
                "cache-control": "private, no-store",
                "content-disposition": f'attachment; filename="{name}.{extension}"',
            },
        )

    async def answer(request: Request, reviewer: Account) -> Any:
        raw = await read_limited(request, MAX_ANSWER_BYTES)
        try:
            payload = loads_strict(raw, runtime.settings.review_max_json_depth)
        except JSONInputError as error:
            raise PortalError(400, f"The answer is not acceptable JSON: {error}") from None
        content = payload.get("answer") if isinstance(payload, dict) else None
        await run_in_threadpool(service.submit, reviewer.name, request.path_params["name"], content, reviewer.teams)
        return {"ok": True}

    async def skip(request: Request, reviewer: Account) -> Any:
        await run_in_threadpool(service.skip, reviewer.name, request.path_params["name"], reviewer.teams)
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
