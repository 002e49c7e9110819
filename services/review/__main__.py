"""``python -m services.review``: serve the review service on ``review_host:review_port``."""

from __future__ import annotations

import uvicorn

from hitl import logs
from hitl.entry import parse_args
from hitl.settings import get_settings
from services.review.app import create_app


def main() -> None:
    parse_args()
    settings = get_settings()
    logs.configure("review", settings.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.review_host,
        port=settings.review_port,
        log_level="warning",
        access_log=False,
        # X-Forwarded-For names the client only when it comes from a configured proxy (the Ingress).
        proxy_headers=bool(settings.review_forwarded_allow_ips),
        forwarded_allow_ips=settings.review_forwarded_allow_ips or None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
