"""Accounts and API keys as data: `hitl review users|keys` change what the running service accepts,
at once and without a restart or a file edit."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from hitl.stack import procs
from tests.review.conftest import a2i_client
from tests.security.conftest import SecurityService, refused
from tests.security.test_hostile_requests import LIST_QUERY, Portal, signed_call

pytestmark = pytest.mark.integration


def hitl(svc: SecurityService, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HITL_REDIS_URL": svc.redis_url,
        "HITL_KEY_PREFIX": svc.key_prefix,
        "HITL_REVIEW_SESSION_SECRET": svc.process.env["HITL_REVIEW_SESSION_SECRET"],
    }
    return subprocess.run(
        [procs.venv_bin("hitl"), "review", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def test_users_lifecycle_through_the_cli(svc_fixture: SecurityService) -> None:
    svc = svc_fixture
    password = "correct-horse-battery"
    added = hitl(svc, "users", "add", "cli-user", "--team", "blue", "--password-stdin", stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"name": "cli-user", "roles": ["reviewer"], "teams": ["blue"]}
    assert hitl(svc, "users", "add", "cli-user", "--password-stdin", stdin=password + "\n").returncode == 1
    short = hitl(svc, "users", "add", "short-pw", "--password-stdin", stdin="short\n")
    assert short.returncode != 0
    listed = json.loads(hitl(svc, "users", "list", "--json").stdout)
    assert {"name": "cli-user", "roles": ["reviewer"], "teams": ["blue"]} in listed
    assert all("password_hash" not in entry for entry in listed)

    portal = Portal(svc.url).sign_in("cli-user", password)
    refused("operator page before the role", portal.http.get("/operator"), 403)
    roles = hitl(svc, "users", "roles", "cli-user", "--role", "reviewer,operator")
    assert json.loads(roles.stdout)["roles"] == ["reviewer", "operator"]
    assert portal.http.get("/operator").status_code == 200  # roles apply to running sessions at once

    changed = hitl(svc, "users", "passwd", "cli-user", "--password-stdin", stdin="another-long-password\n")
    assert changed.returncode == 0, changed.stderr
    refused("session after `users passwd`", portal.api("GET", "/portal/api/queue"), 401)
    again = Portal(svc.url).sign_in("cli-user", "another-long-password")
    assert hitl(svc, "users", "remove", "cli-user").returncode == 0
    refused("session after `users remove`", again.api("GET", "/portal/api/queue"), 401)
    refused("sign-in after `users remove`", Portal(svc.url).login("cli-user", "another-long-password"), 401)


def test_keys_through_the_cli(svc_fixture: SecurityService) -> None:
    svc = svc_fixture
    created = hitl(svc, "keys", "create", "--description", "dispatcher")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    access, secret = key["access_key_id"], key["secret_access_key"]
    listed = json.loads(hitl(svc, "keys", "list").stdout)
    assert [k["description"] for k in listed if k["access_key"] == access] == ["dispatcher"]
    assert secret not in json.dumps(listed)
    client: Any = a2i_client(svc.url, key=access, secret=secret)
    assert "HumanLoopSummaries" in client.list_human_loops(FlowDefinitionArn=LIST_QUERY.split("=", 1)[1]
                                                           .replace("%3A", ":").replace("%2F", "/"))
    assert hitl(svc, "keys", "revoke", access).returncode == 0
    refused("key after `keys revoke`", signed_call(svc, "GET", "/human-loops", query=LIST_QUERY, key=access,
                                                   secret=secret), 403, "UnrecognizedClient")


@pytest.fixture
def svc_fixture(security_service: SecurityService) -> SecurityService:
    return security_service
