"""docker-compose.yml under podman-compose (or docker compose), with the local images, then the same
30-image check as the container-stack test; ``down`` afterwards. Run by ``make compose-check``:

    .venv/bin/python -m tests.containers.compose_check [--keep]

The stack uses the ``fixed`` detection backend (HITL_COMPOSE_DETECT_BACKEND), as the integration tests
do, and free loopback ports (HITL_COMPOSE_*_PORT). It prints each service's start-to-ready time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import redis as redis_lib

from hitl.stack import compose, procs
from hitl.stack import engine as engines
from tests.containers.flow import run_flow
from tests.integration.conftest import LocalStack, wait_until

WORKERS = ("detector", "dispatcher", "trainer", "beat", "intake", "ingestor", "reconciler", "monitor")


def healthy(engine: engines.Engine, service: str) -> bool:
    """The readiness probe of the manifests, in the compose container."""
    argv = ("exec", compose.container_name(service), "python", "-m", "hitl.health", "--ready")
    return engine.run(*argv, check=False).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()
    engine = engines.detect()
    ports = {name: procs.free_port() for name in ("REDIS", "MOTO", "REVIEW", "PROMETHEUS")}
    env = {f"HITL_COMPOSE_{name}_PORT": str(port) for name, port in ports.items()}
    env["HITL_COMPOSE_DETECT_BACKEND"] = "fixed"
    compose.down(engine)
    started = time.monotonic()
    compose.up(engine, env)
    review = f"http://127.0.0.1:{ports['REVIEW']}"
    ready: dict[str, float] = {}
    try:
        # procs.wait_until: a server that does not answer yet refuses connections.
        procs.wait_until(lambda: procs.http_ok(f"http://127.0.0.1:{ports['MOTO']}/moto-api/"), 180, "moto")
        procs.wait_until(lambda: procs.http_ok(f"{review}/readyz"), 240, "review")
        ready["review"] = time.monotonic() - started
        pending = list(WORKERS)

        def poll() -> bool:
            for name in list(pending):
                if healthy(engine, name):
                    ready[name] = time.monotonic() - started
                    pending.remove(name)
            return not pending

        wait_until(poll, 300, "every worker's readiness probe", interval=1.0)
        secrets_dir = compose.secrets_dir()
        client_env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['MOTO']}",
            "AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME": review,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "HITL_REDIS_URL": f"redis://127.0.0.1:{ports['REDIS']}/0",
            "HITL_BUCKET": "hitl-pipeline-local",
            "HITL_KEY_PREFIX": "hitl",
            "HITL_FLOW_DEFINITION_ARN": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/hitl-local",
            "HITL_REVIEW_URL": review,
            "HITL_REVIEW_PASSWORD_FILE": str(secrets_dir / "reviewer-passwords.json"),
            "HITL_PARAMS_CACHE_SECONDS": "10",
        }
        client_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))}, **client_env}
        redis_lib.Redis.from_url(client_env["HITL_REDIS_URL"]).ping()
        with tempfile.TemporaryDirectory(prefix="hitl-compose-") as folder:
            stack = LocalStack(run_dir=Path(folder), env=client_env)
            result = run_flow(stack, Path(folder) / "images", timeout=300)
        print(
            json.dumps(
                {
                    "engine": engine.describe(),
                    "ready_seconds_since_up": {k: round(v, 1) for k, v in sorted(ready.items())},
                    "images": len(result.ids),
                    "loops": len(result.routed),
                    "dataset_lines": len(result.labelled),
                    "flow_seconds": round(result.seconds["flow"], 1),
                },
                indent=2,
            )
        )
    finally:
        if not args.keep:
            compose.down(engine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
