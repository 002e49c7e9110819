"""The local stack, started as a user starts it (``hitl stack up``), for integration tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis as redis_lib

from hitl.stack import procs
from hitl.stack.local import read_env_file
from tests import redis_dbs

HITL = str(Path(sys.executable).parent / "hitl")
STACK_REDIS_DB = redis_dbs.LOCAL_STACK


def _free_port_range(count: int) -> int:
    return procs.free_port_range(count)


@dataclass
class LocalStack:
    run_dir: Path
    env: dict[str, str]

    def cli(
        self, *args: str, check: bool = True, expect: int = 0, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``hitl ARGS``; with ``check`` its exit code must be exactly ``expect`` (0 unless a test
        expects a refusal), so a crash (a traceback also exits 1) never passes as success."""
        result = subprocess.run(
            [HITL, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != expect:
            raise AssertionError(
                f"hitl {' '.join(args)} exited {result.returncode}, expected {expect}: {result.stderr[-3000:]}"
            )
        if check and expect != 0 and "Traceback (most recent call last)" in result.stderr:
            raise AssertionError(f"hitl {' '.join(args)} crashed: {result.stderr[-3000:]}")
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    @property
    def redis(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.env["HITL_REDIS_URL"], decode_responses=True)

    @property
    def bucket(self) -> str:
        return self.env["HITL_BUCKET"]

    def key(self, *parts: str) -> str:
        return ":".join((self.env["HITL_KEY_PREFIX"], *parts))

    def log(self, name: str) -> str:
        return (self.run_dir / "logs" / f"{name}.log").read_text(errors="replace")


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.3) -> Any:
    """Poll ``check`` until it returns something truthy (and return that), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def running_stack(run_dir: Path, redis_url: str, db: int, settings: dict[str, str]) -> Iterator[dict[str, str]]:
    """``hitl stack up`` as a subprocess on free ports and its own (flushed) Redis database; yields
    the environment a client of that stack uses (``settings`` plus ``stack.env``); ``down`` after,
    and its Redis database flushed, so the stack leaves no keys behind."""
    stack_redis = redis_url.rsplit("/", 1)[0] + f"/{db}"
    redis_lib.Redis.from_url(stack_redis).flushdb()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))},
        "HITL_RUN_DIR": str(run_dir),
        "HITL_REDIS_URL": stack_redis,
        # Workers read the parameters at every use: a test's `hitl params set` applies to the very next
        # task, so no test waits out a cache.
        "HITL_PARAMS_CACHE_SECONDS": "0",
        "HITL_STACK_MOTO_PORT": str(procs.free_port()),
        "HITL_REVIEW_PORT": str(procs.free_port()),
        "HITL_STACK_METRICS_BASE_PORT": str(_free_port_range(10)),
        # moto's IAM on: each service signs with its own user, allowed only by its deploy/iam policy.
        "HITL_STACK_ENFORCE_IAM": "true",
        **settings,
    }
    up = subprocess.run([HITL, "stack", "up"], env=env, capture_output=True, text=True, timeout=180, check=False)
    if up.returncode != 0:
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (run_dir / "logs").glob("*.log"))
        subprocess.run([HITL, "stack", "down"], env=env, check=False, capture_output=True, timeout=120)
        raise RuntimeError(f"stack up failed: {up.stderr[-3000:]}\n{logs}")
    stack_env = {**env, **read_env_file(run_dir / "stack.env")}
    try:
        yield stack_env
    finally:
        subprocess.run([HITL, "stack", "down"], env=stack_env, capture_output=True, check=False, timeout=120)
        # The stack's keys go with it: its database is its own.
        redis_lib.Redis.from_url(stack_redis).flushdb()
    denied = access_denials(run_dir)
    assert not denied, "a service was refused by its IAM policy:\n" + "\n".join(denied)


ACCESS_ERRORS = ("AccessDenied", "is not authorized to perform", "InvalidClientTokenId", "SignatureDoesNotMatch")


def access_denials(run_dir: Path) -> list[str]:
    """Log lines of the stack's processes where AWS (moto under IAM) refused a request."""
    found = []
    for path in sorted((run_dir / "logs").glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if any(error in line for error in ACCESS_ERRORS):
                found.append(f"{path.name}: {line[:400]}")
    return found


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[LocalStack]:
    run_dir = tmp_path_factory.mktemp("stack")
    settings = {
        "HITL_KEY_PREFIX": "hitlit",
        "HITL_BUCKET": "hitl-it",
        "HITL_DETECT_BACKEND": "fixed",
        "HITL_WORKER_CONCURRENCY": "2",
    }
    with running_stack(run_dir, redis_url, STACK_REDIS_DB, settings) as env:
        yield LocalStack(run_dir=run_dir, env=env)
