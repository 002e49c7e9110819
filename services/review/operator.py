"""The operator page: loops by status, recent loops, per-reviewer throughput and time per task."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hitl.review import timefmt
from services.review import security
from services.review.config import Runtime
from services.review.portal import templates


def routes(runtime: Runtime) -> list[Route]:
    async def page(request: Request) -> Response:
        reviewer = await security.current_reviewer(request, runtime)
        if reviewer is None:
            return RedirectResponse("/login", status_code=303)
        if not reviewer.is_operator:
            return Response("The operator page needs the operator role.", status_code=403)
        overview = await run_in_threadpool(runtime.service.overview)
        return templates.TemplateResponse(
            request,
            "operator.html",
            {
                "reviewer": reviewer,
                "csrf_token": security.csrf_token(request),
                "overview": overview,
                "iso": timefmt.iso,
            },
        )

    return [Route("/operator", page, methods=["GET"])]
