"""``make up`` / ``make down``: the embedded defaults on one machine, loopback only.

Redis is reused when 127.0.0.1:6379 answers (else Debian's ``redis-server`` is started); moto's
server plays S3, SQS, EventBridge and SSM; the pipeline's own services run as child processes
tracked by pid files under the run directory. ``.run/stack.env`` tells users, tests and the AWS
CLI how to reach all of it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from hitl import aws
from hitl.settings import Settings
from hitl.stack import iam as stack_iam
from hitl.stack import procs
from hitl.stack.bootstrap import bootstrap

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"
# Workers stop before what they depend on.
STOP_ORDER = (
    *("intake", "ingestor", "reconciler", "detector", "dispatcher", "trainer", "beat", "monitor"),
    *("review", "moto", "redis"),
)


@dataclass
class Service:
    """One pipeline process of the local stack."""

    name: str
    module: str
    metrics: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)


def pipeline_services() -> list[Service]:
    return [
        Service("detector", "services.detector"),
        Service("dispatcher", "services.dispatcher"),
        Service("ingestor", "services.ingestor"),
        Service("reconciler", "services.ingestor.reconciler"),
        Service("trainer", "services.trainer"),
        Service("intake", "services.intake"),
        Service("monitor", "services.monitor"),
        Service("beat", "services.beat"),
    ]


@dataclass
class Stack:
    settings: Settings
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def group(self) -> procs.ProcessGroup:
        return procs.ProcessGroup(self.run_dir)

    @property
    def env_file(self) -> Path:
        return self.run_dir / "stack.env"


def _ensure_redis(stack: Stack) -> None:
    parsed = urlparse(stack.settings.redis_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if procs.port_open(port, host):
        return
    if host not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"Redis at {host}:{port} does not answer")
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("no Redis answers and redis-server is not installed (apt-get install redis-server)")
    stack.group.start("redis", [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"])
    procs.wait_until(lambda: procs.port_open(port, host), 15, "redis-server")


def _start_moto(stack: Stack) -> str:
    port = stack.settings.stack_moto_port
    url = f"http://127.0.0.1:{port}"
    stack.group.start("moto", [procs.venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)])
    procs.wait_until(lambda: procs.http_ok(f"{url}/moto-api/"), 30, f"moto server on {url}")
    return url


def _service_env(stack: Stack, service: Service, index: int) -> dict[str, str]:
    health_dir = stack.run_dir / "health" / service.name
    env = {
        **stack.env,
        "HITL_HEARTBEAT_FILE": str(health_dir / "heartbeat"),
        "HITL_READY_FILE": str(health_dir / "ready"),
        "HITL_RUN_DIR": str(stack.run_dir),
        **service.extra_env,
    }
    if service.metrics:
        port = stack.settings.stack_metrics_base_port + index
        env["HITL_METRICS_PORT"] = str(port)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(stack.run_dir / "prometheus" / service.name)
        stack.urls[f"METRICS_{service.name.upper()}"] = f"http://127.0.0.1:{port}/metrics"
    return env


def write_env_file(stack: Stack) -> None:
    lines = ["# Written by `make up`: `source .run/stack.env` to talk to the local stack."]
    for key, value in sorted({**stack.env, **{f"HITL_{k}_URL": v for k, v in stack.urls.items()}}.items()):
        lines.append(f"export {key}={shlex.quote(value)}")
    stack.env_file.write_text("\n".join(lines) + "\n")


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def _start_review(stack: Stack, extra_env: dict[str, str] | None = None) -> None:
    """The A2I-compatible review service: its endpoint and flow definition go into stack.env."""
    from services.review import stackplug

    url = stackplug.start(stack.group, {**stack.env, **(extra_env or {})}, stack.settings.review_port)
    for line in stackplug.stack_env_lines(url, stack.settings):
        key, _, value = line.partition("=")
        stack.env[key] = value


def up(settings: Settings, run_dir: Path, services: list[Service] | None = None) -> Stack:
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings=settings, run_dir=run_dir)
    _ensure_redis(stack)
    moto_url = _start_moto(stack)
    stack.env.update(
        {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_DEFAULT_REGION": REGION,
            **LOCAL_CREDENTIALS,
            "HITL_BUCKET": settings.bucket,
            "HITL_REDIS_URL": settings.redis_url,
            "HITL_KEY_PREFIX": settings.key_prefix,
            "HITL_DETECT_BACKEND": settings.detect_backend,
        }
    )
    stack.urls["MOTO"] = moto_url
    os.environ.update(stack.env)
    aws.reset_clients()
    # Under IAM, each process signs with its own user's keys (the operator's go into stack.env).
    iam_env = stack_iam.service_environments(settings, moto_url, REGION, run_dir) if settings.stack_enforce_iam else {}
    os.environ.update(iam_env.get("bootstrap", {}))
    aws.reset_clients()
    resources = bootstrap(settings)
    stack.env.update(iam_env.get("operator", {}))
    os.environ.update(stack.env)
    aws.reset_clients()
    stack.urls["UPLOADS_QUEUE"] = resources.uploads_queue_url
    stack.urls["EVENTS_QUEUE"] = resources.events_queue_url
    _start_review(stack, iam_env.get("review", {}))
    for index, service in enumerate(services if services is not None else pipeline_services()):
        env = {**_service_env(stack, service, index), **iam_env.get(service.name, {})}
        stack.group.start(service.name, [sys.executable, "-m", service.module], env)
    write_env_file(stack)
    return stack


def wait_ready(stack: Stack, names: list[str], timeout: float = 60.0) -> None:
    """Wait for each service's ready file; fail at once, naming the log, if one exits."""
    deadline = time.monotonic() + timeout
    for name in names:
        ready = stack.run_dir / "health" / name / "ready"
        while not ready.exists():
            pid = stack.group.pid(name)
            if pid is None or not procs.alive(pid):
                raise RuntimeError(f"{name} exited; see {stack.run_dir / 'logs' / (name + '.log')}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after {timeout:.0f}s")
            time.sleep(0.1)


def down(run_dir: Path) -> list[str]:
    return procs.ProcessGroup(run_dir.resolve()).stop_all(order=STOP_ORDER)
