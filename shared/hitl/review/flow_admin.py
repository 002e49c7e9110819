"""A client of the review service's flow-definition admin API (services/review/flows_api.py).

Requests are signed with AWS SigV4 (signing name ``sagemaker``) from the ordinary boto3 credential
chain, as the A2I client's are. The body's SHA-256 is sent and signed in ``X-Amz-Content-SHA256``.

For code that keeps a flow's labels in step with the dataset::

    from hitl.review.flow_admin import FlowAdminClient
    FlowAdminClient.from_settings().add_labels("hitl-local-review", ["bag", "shoe"])
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from hitl.review import validation
from hitl.settings import Settings, get_settings

SIGNING_NAME = "sagemaker"


class FlowAdminError(RuntimeError):
    """An error answer of the admin API: HTTP status, AWS error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def review_url(settings: Settings | None = None) -> str:
    """The review service's base URL: $HITL_REVIEW_URL, the A2I endpoint, or the configured port."""
    settings = settings or get_settings()
    return (
        os.environ.get("HITL_REVIEW_URL")
        or os.environ.get("AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME")
        or f"http://127.0.0.1:{settings.review_port}"
    ).rstrip("/")


class FlowAdminClient:
    def __init__(
        self,
        base_url: str,
        region: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("the review service URL must be http(s)")
        self.base_url = base_url.rstrip("/")
        self.region = region
        self.timeout = timeout
        if access_key is not None and secret_key is not None:
            self._credentials: Any = boto3.Session(
                aws_access_key_id=access_key, aws_secret_access_key=secret_key
            ).get_credentials()
        else:
            self._credentials = boto3.Session().get_credentials()
        if self._credentials is None:
            raise ValueError("no AWS credentials found to sign requests to the review service")

    @classmethod
    def from_settings(cls, settings: Settings | None = None, base_url: str | None = None) -> FlowAdminClient:
        settings = settings or get_settings()
        return cls(base_url or review_url(settings), settings.review_region)

    # --- transport -----------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"X-Amz-Content-SHA256": hashlib.sha256(data).hexdigest()}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(self._credentials.get_frozen_credentials(), SIGNING_NAME, self.region).add_auth(request)
        prepared = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            url, data=data or None, method=method, headers=dict(request.headers)
        )
        try:
            with urllib.request.urlopen(prepared, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                found = json.loads(raw)
                code, message = found.get("__type", "Error"), found.get("Message", "")
            except ValueError:
                code, message = "Error", raw.decode(errors="replace")[:500]
            raise FlowAdminError(error.code, code, message) from None

    # --- operations ----------------------------------------------------------------------------
    def create(self, definition: dict[str, Any]) -> str:
        """CreateFlowDefinition; the ARN. Creating the same definition again is harmless."""
        found: dict[str, Any] = self._call("POST", "/flow-definitions", definition)
        return str(found["FlowDefinitionArn"])

    def list_flows(self, sort_order: str = "Descending") -> list[dict[str, Any]]:
        """Every flow definition's summary (all pages)."""
        summaries: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query = {"SortOrder": sort_order, "MaxResults": "100"}
            if token:
                query["NextToken"] = token
            page = self._call("GET", "/flow-definitions", query=query)
            summaries += page.get("FlowDefinitionSummaries", [])
            token = page.get("NextToken")
            if not token:
                return summaries

    def describe(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/flow-definitions/{validation.flow_name(name)}")
        return found

    def update(self, name: str, changes: dict[str, Any], expected_version: int | None = None) -> dict[str, Any]:
        """A partial update: any definition field, plus ``AddLabels`` / ``RemoveLabels``; the new description."""
        body = dict(changes)
        if expected_version is not None:
            body["ExpectedVersion"] = expected_version
        found: dict[str, Any] = self._call("PATCH", f"/flow-definitions/{validation.flow_name(name)}", body)
        return found

    def add_labels(self, name: str, labels: list[str]) -> list[str]:
        """Add labels the flow lacks (atomically, keeping the others); the flow's labels after."""
        return list(self.update(name, {"AddLabels": list(labels)})["Labels"])

    def set_labels(self, name: str, labels: list[str]) -> list[str]:
        """Replace the flow's label list; the flow's labels after."""
        return list(self.update(name, {"Labels": list(labels)})["Labels"])


def update_flow_labels(labels: list[str], flow_name: str | None = None, *, replace: bool = False,
                       settings: Settings | None = None) -> list[str]:
    """Make a flow offer ``labels`` (added to its list, or replacing it); the flow's labels after.

    ``flow_name`` defaults to the pipeline's flow (``HITL_FLOW_DEFINITION_ARN``), else the review
    service's default flow.
    """
    settings = settings or get_settings()
    if flow_name is None:
        arn = settings.flow_definition_arn
        flow_name = validation.flow_name_of(arn) if arn else settings.review_default_flow_name
    client = FlowAdminClient.from_settings(settings)
    return client.set_labels(flow_name, labels) if replace else client.add_labels(flow_name, labels)
