"""The review service as deployed: accounts, API keys and the session secret come from the Secret
`hitl-review` (shared by every replica, so sessions work across pods), and on AWS the cookies are
Secure behind the TLS Ingress."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.deploy.conftest import by_kind

MOUNT = "/var/run/secrets/hitl-review"


def review_pod(objects: dict[str, list[dict[str, Any]]], overlay: str) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = by_kind(objects[overlay], "Deployment")["review"]
    return deployment, deployment["spec"]["template"]["spec"]


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["containers"][0].get("env", [])}


@pytest.mark.parametrize("overlay", ["local", "aws"])
def test_session_secret_and_first_admin_come_from_the_secret(
    objects: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    _, pod = review_pod(objects, overlay)
    env = env_of(pod)
    assert env["HITL_REVIEW_SESSION_SECRET_FILE"] == f"{MOUNT}/session-secret"
    assert env["HITL_REVIEW_ADMIN_FILE"] == f"{MOUNT}/admin.json"
    assert "HITL_REVIEW_SESSION_SECRET" not in env  # never a literal in the manifests
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["review-secrets"]["mountPath"] == MOUNT
    assert mounts["review-secrets"]["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "review-secrets")
    assert volume["secret"]["secretName"].startswith("hitl-review")


def test_aws_runs_two_replicas_with_secure_cookies(objects: dict[str, list[dict[str, Any]]]) -> None:
    deployment, pod = review_pod(objects, "aws")
    assert deployment["spec"]["replicas"] == 2
    env = env_of(pod)
    assert env["HITL_REVIEW_SECURE_COOKIES"] == "true"
    assert env["HITL_REVIEW_FORWARDED_ALLOW_IPS"]  # the Ingress reports the client address
    volume = next(v for v in pod["volumes"] if v["name"] == "review-secrets")
    assert volume["secret"]["secretName"] == "hitl-review"  # created outside the repository
    assert "hitl-review" not in {s["metadata"]["name"] for s in by_kind(objects["aws"], "Secret").values()}


def test_local_overlay_generates_development_accounts(objects: dict[str, list[dict[str, Any]]]) -> None:
    _, pod = review_pod(objects, "local")
    volume = next(v for v in pod["volumes"] if v["name"] == "review-secrets")
    secret = by_kind(objects["local"], "Secret")[volume["secret"]["secretName"]]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert json.loads(data["admin.json"])["password_hash"].startswith("$argon2id$")
    assert json.loads(data["api-keys.json"]) == {"testing": "testing"}  # moto's dummy key, as the pipeline signs
    assert env_of(pod)["HITL_REVIEW_API_KEYS_FILE"] == f"{MOUNT}/api-keys.json"
