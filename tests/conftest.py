"""Fixtures that give tests the real local parts.

- ``moto_endpoint``: moto's server over HTTP on a free loopback port, one per test session; the AWS
  variables point boto3 at it (``AWS_ENDPOINT_URL``), exactly as ``.run/stack.env`` does.
- ``redis_url``: a private ``redis-server`` (Debian's package) on a free loopback port, one per test
  session, so the machine's Redis is left as it was found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl import aws
from hitl.settings import Settings, get_settings
from hitl.stack import procs
from tests import redis_dbs

ROOT = Path(__file__).resolve().parent.parent
TEST_REDIS_DB = redis_dbs.UNIT

# Loopback credentials for moto; never real ones.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
for leaked in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
    os.environ.pop(leaked, None)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("run")


@pytest.fixture(scope="session")
def moto_endpoint(run_dir: Path) -> Iterator[str]:
    group = procs.ProcessGroup(run_dir / "moto")
    port = procs.free_port()
    group.start("moto", [procs.venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)])
    url = f"http://127.0.0.1:{port}"
    procs.wait_until(lambda: procs.http_ok(f"{url}/moto-api/"), 30, "moto server")
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = url
    aws.reset_clients()
    yield url
    group.stop_all()
    if previous is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = previous
    aws.reset_clients()


@pytest.fixture(scope="session")
def redis_url(run_dir: Path) -> Iterator[str]:
    """A private ``redis-server`` on a free loopback port for this test session.

    The machine's Redis on 6379 is never touched, and two test sessions (two checkouts) never share
    keys. Persistence is off: nothing outlives the session.
    """
    server = shutil.which("redis-server")
    if server is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True)
        server = "redis-server"
    group = procs.ProcessGroup(run_dir / "redis")
    port = procs.free_port()
    data_dir = run_dir / "redis" / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    group.start(
        "redis",
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(data_dir)],
    )
    procs.wait_until(lambda: procs.port_open(port), 15, "redis")
    yield f"redis://127.0.0.1:{port}/{TEST_REDIS_DB}"
    group.stop_all()


@pytest.fixture(scope="session")
def settings(moto_endpoint: str, redis_url: str) -> Iterator[Settings]:
    """Settings for the test stack; also exported as HITL_* so child processes agree."""
    env = {"HITL_REDIS_URL": redis_url, "HITL_BUCKET": "hitl-test", "HITL_KEY_PREFIX": "hitltest"}
    os.environ.update(env)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
