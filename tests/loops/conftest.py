"""A local stack of its own for the human-loop integration tests (``hitl stack up`` as a subprocess).

Its own Redis database, key prefix and bucket, so it can run in the same session as the shared
``local_stack`` of tests/integration without the two stacks' workers taking each other's tasks.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import redis as redis_lib

from hitl.stack import procs
from hitl.stack.local import read_env_file
from tests.integration.conftest import HITL, LocalStack, _free_port_range

LOOPS_REDIS_DB = int(os.environ.get("HITL_TEST_LOOPS_REDIS_DB", "12"))


@pytest.fixture(scope="session")
def loops_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    run_dir = tmp_path_factory.mktemp("loops-stack")
    stack_redis = redis_url.rsplit("/", 1)[0] + f"/{LOOPS_REDIS_DB}"
    redis_lib.Redis.from_url(stack_redis).flushdb()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))},
        "HITL_RUN_DIR": str(run_dir),
        "HITL_REDIS_URL": stack_redis,
        "HITL_KEY_PREFIX": "hitlloops",
        "HITL_BUCKET": "hitl-loops",
        "HITL_DETECT_BACKEND": "fixed",
        "HITL_PARAMS_CACHE_SECONDS": "1",
        "HITL_STACK_MOTO_PORT": str(procs.free_port()),
        "HITL_REVIEW_PORT": str(procs.free_port()),
        "HITL_STACK_METRICS_BASE_PORT": str(_free_port_range(10)),
        "HITL_WORKER_CONCURRENCY": "4",
        "HITL_DISPATCH_RATE_LIMIT": "200/s",
        "HITL_INGEST_WAIT_SECONDS": "2",
        "HITL_RECONCILE_MIN_AGE_SECONDS": "0",
    }
    up = subprocess.run([HITL, "stack", "up"], env=env, capture_output=True, text=True, timeout=180, check=False)
    if up.returncode != 0:
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (run_dir / "logs").glob("*.log"))
        subprocess.run([HITL, "stack", "down"], env=env, check=False)
        raise RuntimeError(f"stack up failed: {up.stderr}\n{logs}")
    stack_env = {**env, **read_env_file(run_dir / "stack.env")}
    yield LocalStack(run_dir=run_dir, env=stack_env)
    subprocess.run([HITL, "stack", "down"], env=stack_env, capture_output=True, check=False, timeout=120)
