"""The local stack with its services in containers (``hitl containers up``), from images built from
this checkout's sources (or reused when images of the same sources exist: tagged ``src-<hash>``).

Skipped only when no container engine can run a container here, saying why.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from hitl.stack import engine as engines
from hitl.stack import procs
from tests import redis_dbs
from tests.integration.conftest import HITL, LocalStack

CONTAINERS_REDIS_DB = redis_dbs.CONTAINERS
TARGETS = ("runtime", "trainer")


def port_range(count: int) -> int:
    return procs.free_port_range(count)


@pytest.fixture(scope="session")
def container_engine(tmp_path_factory: pytest.TempPathFactory) -> engines.Engine:
    """An engine that runs containers, with the images of this checkout built (or reused)."""
    try:
        engine = engines.detect()
        if all(engine.image_exists(engines.content_tag(t)) for t in TARGETS):
            engines.check_can_run(engine, engines.content_tag("runtime"))
        else:
            engines.check_can_run(engine, engines.ensure_base(engine))
    except engines.EngineUnavailable as why:
        pytest.skip(str(why))
    log = tmp_path_factory.mktemp("image") / "build.log"
    try:
        engines.build(engine, TARGETS, reuse=True, log=log)
    except RuntimeError as error:
        raise AssertionError(f"{error}\n{log.read_text()[-5000:] if log.exists() else ''}") from error
    return engine


@pytest.fixture(scope="session")
def container_stack(
    container_engine: engines.Engine, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[LocalStack]:
    run_dir = tmp_path_factory.mktemp("container-stack")
    stack_redis = redis_url.rsplit("/", 1)[0] + f"/{CONTAINERS_REDIS_DB}"
    redis_lib.Redis.from_url(stack_redis).flushdb()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))},
        "HITL_RUN_DIR": str(run_dir),
        "HITL_REDIS_URL": stack_redis,
        "HITL_KEY_PREFIX": "hitlctr",
        "HITL_BUCKET": "hitl-containers",
        "HITL_DETECT_BACKEND": "fixed",
        "HITL_WORKER_CONCURRENCY": "2",
        "HITL_DISPATCH_RATE_LIMIT": "200/s",
        "HITL_INGEST_WAIT_SECONDS": "2",
        "HITL_RECONCILE_MIN_AGE_SECONDS": "0",
        "HITL_PARAMS_CACHE_SECONDS": "1",
        "HITL_STACK_MOTO_PORT": str(procs.free_port()),
        "HITL_REVIEW_PORT": str(procs.free_port()),
        "HITL_STACK_METRICS_BASE_PORT": str(port_range(10)),
    }
    up = subprocess.run(
        [HITL, "containers", "up", "--no-build"], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    stack_env = dict(env)
    if (run_dir / "stack.env").exists():
        from hitl.stack.local import read_env_file

        stack_env.update(read_env_file(run_dir / "stack.env"))
    try:
        if up.returncode != 0:
            raise RuntimeError(f"containers up failed:\n{up.stderr[-5000:]}")
        yield LocalStack(run_dir=Path(run_dir), env=stack_env)
    finally:
        subprocess.run([HITL, "containers", "down"], env=stack_env, capture_output=True, check=False, timeout=300)
        redis_lib.Redis.from_url(stack_redis).flushdb()
