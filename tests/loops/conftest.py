"""A local stack of its own for the human-loop integration tests (``hitl stack up`` as a subprocess).

Its own Redis database, key prefix and bucket, so it can run in the same session as the shared
``local_stack`` of tests/integration without the two stacks' workers taking each other's tasks.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import redis_dbs
from tests.integration.conftest import LocalStack, running_stack

LOOPS_REDIS_DB = redis_dbs.LOOPS


@pytest.fixture(scope="session")
def loops_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    run_dir = tmp_path_factory.mktemp("loops-stack")
    settings = {
        "HITL_KEY_PREFIX": "hitlloops",
        "HITL_BUCKET": "hitl-loops",
        "HITL_DETECT_BACKEND": "fixed",
        "HITL_WORKER_CONCURRENCY": "4",
        "HITL_DISPATCH_RATE_LIMIT": "200/s",
        "HITL_INGEST_WAIT_SECONDS": "2",
        "HITL_RECONCILE_MIN_AGE_SECONDS": "0",
    }
    with running_stack(run_dir, redis_url, LOOPS_REDIS_DB, settings) as env:
        yield LocalStack(run_dir=run_dir, env=env)
