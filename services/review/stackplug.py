"""Hooks for the local stack (``make up``): start the service and describe it in ``.run/stack.env``.

Reviewer accounts for the local stack are generated into the run directory on every start
(never committed): argon2 hashes in ``review/reviewers.json``, passwords in the 0600 file
``review/reviewer-passwords.json``.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from hitl.review import reviewers
from hitl.review.flows import default_flow
from hitl.review.validation import flow_arn
from hitl.settings import Settings, get_settings
from hitl.stack.procs import ProcessGroup, http_ok, venv_bin, wait_until

PROCESS_NAME = "review"
LOCAL_REVIEWERS = ["alice", "bob", "carol"]
LOCAL_OPERATORS = frozenset({"alice"})
LOOPBACK_KEYS = {"testing": "testing"}  # the local stack's boto3 credentials; never real ones


def review_dir(settings: Settings) -> Path:
    return Path(settings.run_dir) / "review"


def prepare(settings: Settings) -> dict[str, str]:
    """Write the run-dir files (reviewers, passwords, session secret, flows); the env to run with."""
    folder = review_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    reviewers_file = folder / "reviewers.json"
    passwords_file = folder / "reviewer-passwords.json"
    if not reviewers_file.exists() or not passwords_file.exists():
        reviewers.generate(reviewers_file, passwords_file, LOCAL_REVIEWERS, LOCAL_OPERATORS)
    secret_file = folder / "session-secret"
    if not secret_file.exists():
        secret_file.touch(mode=0o600)
        secret_file.write_text(secrets.token_urlsafe(32))
    flows_file = folder / "flow-definitions.json"
    flow = default_flow(settings.review_default_flow_name, settings.bucket, settings.a2i_output_prefix)
    flows_file.write_text(json.dumps({"FlowDefinitions": [flow.model_dump(by_alias=True)]}, indent=2))
    return {
        "HITL_REVIEW_REVIEWERS_FILE": str(reviewers_file.resolve()),
        "HITL_REVIEW_SESSION_SECRET_FILE": str(secret_file.resolve()),
        "HITL_REVIEW_FLOW_DEFINITIONS_FILE": str(flows_file.resolve()),
        "HITL_REVIEW_API_KEYS": json.dumps(LOOPBACK_KEYS),
        # The local stack's own credentials may also change flow definitions (hitl review flows).
        "HITL_REVIEW_ADMIN_ACCESS_KEYS": json.dumps(sorted(LOOPBACK_KEYS)),
    }


def start(group: ProcessGroup, env: dict[str, str], port: int, timeout: float = 30.0) -> str:
    """Start ``python -m services.review`` on ``port``; the base URL once /healthz answers."""
    settings = get_settings()
    prepared = prepare(settings)
    run_env = {**env, **prepared, "HITL_REVIEW_PORT": str(port), "HITL_REVIEW_HOST": "127.0.0.1"}
    if "HITL_REVIEW_ADMIN_ACCESS_KEYS" in env:  # e.g. the per-service IAM users' keys, besides the stack's own
        admins = set(json.loads(env["HITL_REVIEW_ADMIN_ACCESS_KEYS"])) | set(
            json.loads(prepared["HITL_REVIEW_ADMIN_ACCESS_KEYS"])
        )
        run_env["HITL_REVIEW_ADMIN_ACCESS_KEYS"] = json.dumps(sorted(admins))
    group.start(PROCESS_NAME, [venv_bin("python"), "-m", "services.review"], run_env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/healthz"), timeout, "review service")
    return url


def stack_env_lines(url: str, settings: Settings | None = None) -> list[str]:
    """``KEY=value`` lines for ``.run/stack.env``."""
    settings = settings or get_settings()
    folder = review_dir(settings).resolve()
    arn = flow_arn(settings.review_region, settings.review_account_id, settings.review_default_flow_name)
    return [
        f"HITL_REVIEW_URL={url}",
        f"AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME={url}",
        f"HITL_FLOW_DEFINITION_ARN={arn}",
        f"HITL_REVIEW_REVIEWERS_FILE={folder / 'reviewers.json'}",
        f"HITL_REVIEW_PASSWORD_FILE={folder / 'reviewer-passwords.json'}",
        # `hitl review keys` seals API key secrets with the service's session secret.
        f"HITL_REVIEW_SESSION_SECRET_FILE={folder / 'session-secret'}",
    ]
