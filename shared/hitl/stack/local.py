"""``make up`` / ``make down``: the embedded defaults on one machine, loopback only.

The stack runs its own ``redis-server`` (append-only file under ``<run_dir>/redis``) on
``HITL_STACK_REDIS_PORT``, or reuses the Redis named by ``HITL_REDIS_URL`` when that is set and
answers; moto's server plays S3, SQS, EventBridge and SSM, its state saved at ``down`` and restored
at ``up`` (:mod:`hitl.stack.persist`); the pipeline's own services run as child processes tracked by
pid files under the run directory. ``.run/stack.env`` tells users, tests and the AWS CLI how to reach
all of it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hitl import aws
from hitl.logs import get_logger
from hitl.settings import Settings
from hitl.stack import iam as stack_iam
from hitl.stack import persist, procs, supervisor
from hitl.stack.bootstrap import bootstrap

log = get_logger("hitl.stack")

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
REGION = "us-east-1"
# The supervisor first (nothing is revived while the stack goes down), then workers before what they
# depend on. The workers depend on none of each other (their work waits in Redis and SQS), so they
# stop together.
WORKERS = ("intake", "ingestor", "reconciler", "detector", "dispatcher", "trainer", "beat", "monitor")
# Writers stop first (the supervisor, so that it restarts nothing, then the workers, then the review
# service), so that moto's state can be snapshotted before moto and Redis stop.
WRITER_TIERS: tuple[tuple[str, ...], ...] = ((supervisor.NAME,), WORKERS, ("review",))
STOP_TIERS: tuple[tuple[str, ...], ...] = (*WRITER_TIERS, ("moto",), ("redis",))
STOP_ORDER = tuple(name for tier in STOP_TIERS for name in tier)


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
    notes: list[str] = field(default_factory=list)  # what `stack up` tells the user

    @property
    def group(self) -> procs.ProcessGroup:
        return procs.ProcessGroup(self.run_dir)

    @property
    def env_file(self) -> Path:
        return self.run_dir / "stack.env"


def stack_redis_url(settings: Settings) -> str:
    """``HITL_REDIS_URL`` when set; else the stack's own Redis on ``HITL_STACK_REDIS_PORT`` (never the
    machine's shared 6379 database)."""
    if "redis_url" in settings.model_fields_set:
        return settings.redis_url
    return f"redis://127.0.0.1:{settings.stack_redis_port}/0"


def redis_data_dir(run_dir: Path) -> Path:
    return run_dir / "redis"


def _ensure_redis(stack: Stack, url: str) -> None:
    """Reuse a Redis that answers at ``url``; else start the stack's own, with an append-only file
    under the run directory (fsync every second), so its keys survive ``make down`` / ``make up``."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if procs.port_open(port, host):
        return
    if host not in ("127.0.0.1", "localhost"):
        raise RuntimeError(f"Redis at {host}:{port} does not answer")
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("no Redis answers and redis-server is not installed (apt-get install redis-server)")
    data = redis_data_dir(stack.run_dir)
    data.mkdir(parents=True, exist_ok=True)
    argv = [server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data), "--save", ""]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--appenddirname", "aof"]
    stack.group.start("redis", argv)
    procs.wait_until(lambda: procs.port_open(port, host), 30, "redis-server")


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
    crashed = _previous_crash(stack)
    redis_url = stack_redis_url(settings)
    _ensure_redis(stack, redis_url)
    moto_url = _start_moto(stack)
    restored = persist.restore_storage(run_dir, moto_url)
    if restored is not None:
        stack.notes.append(f"restored from the last `make down`: {restored.describe()}")
    if crashed:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(restored.saved_at)) if restored else "the start"
        stack.notes.append(
            "the previous stack was not stopped with `make down`: objects and parameters written since "
            f"{since} are lost, while Redis kept its keys; `hitl stack reset` gives a clean slate"
        )
        log.warning("previous_stack_not_stopped", snapshot_saved_at=restored.saved_at if restored else None)
    stack.env.update(
        {
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_DEFAULT_REGION": REGION,
            **LOCAL_CREDENTIALS,
            "HITL_BUCKET": settings.bucket,
            "HITL_REDIS_URL": redis_url,
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
    persist.restore_messages(run_dir, moto_url)
    _start_review(stack, iam_env.get("review", {}))
    for index, service in enumerate(services if services is not None else pipeline_services()):
        env = {**_service_env(stack, service, index), **iam_env.get(service.name, {})}
        stack.group.start(service.name, [sys.executable, "-m", service.module], env)
    if settings.stack_supervise:
        stack.group.start(supervisor.NAME, [sys.executable, "-m", "hitl.stack.supervisor", str(run_dir)], stack.env)
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


def _previous_crash(stack: Stack) -> bool:
    """A pid file of a process that is gone: the last stack ended without ``make down``."""
    group = stack.group
    dead = [n for n in group.names() if (pid := group.pid(n)) is None or not procs.alive(pid)]
    for name in dead:
        (group.pid_dir / f"{name}.pid").unlink(missing_ok=True)
    return "moto" in dead


def running(run_dir: Path) -> list[str]:
    group = procs.ProcessGroup(run_dir.resolve())
    return [n for n in group.names() if (pid := group.pid(n)) is not None and procs.alive(pid)]


def down(run_dir: Path) -> list[str]:
    """Stop the writers, snapshot moto's state (:mod:`hitl.stack.persist`), then stop the rest."""
    run_dir = run_dir.resolve()
    group = procs.ProcessGroup(run_dir)
    tracked = group.names()
    stopped: list[str] = []
    for tier in WRITER_TIERS:
        stopped += group.stop_together([n for n in tier if n in tracked])
    moto_pid = group.pid("moto")
    try:
        if moto_pid is not None and procs.alive(moto_pid) and (run_dir / "stack.env").exists():
            stack_env = read_env_file(run_dir / "stack.env")
            endpoint = stack_env.get("AWS_ENDPOINT_URL", "")
            names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            keys: dict[str, str] = {k: stack_env[k] for k in names if k in stack_env}
            if endpoint:
                summary = persist.save(run_dir, endpoint, keys if len(keys) == 2 else None)
                log.info("moto_state_saved", summary=summary.describe())
    finally:
        # A failed snapshot is reported (the command fails with its error) but never leaves moto and
        # Redis running.
        stopped += group.stop_all(order=STOP_ORDER)
    return stopped


def reset(run_dir: Path, settings: Settings) -> list[str]:
    """A clean slate for a stopped stack: Redis and the object store together. Returns what was cleared."""
    run_dir = run_dir.resolve()
    if running(run_dir):
        raise RuntimeError(f"the stack is running ({', '.join(running(run_dir))}): stop it first with `make down`")
    cleared = []
    if persist.clear(run_dir):
        cleared.append("object store and parameters snapshot")
    if redis_data_dir(run_dir).exists():
        shutil.rmtree(redis_data_dir(run_dir))
        cleared.append(f"the stack's Redis data ({redis_data_dir(run_dir)})")
    url = stack_redis_url(settings)
    parsed = urlparse(url)
    if procs.port_open(parsed.port or 6379, parsed.hostname or "127.0.0.1"):
        # A Redis the stack reuses but does not own: only this deployment's keys and queues go.
        import redis as redis_lib

        from hitl.celery_app import QUEUES

        client = redis_lib.Redis.from_url(url)
        keys = list(client.scan_iter(f"{settings.key_prefix}:*", count=1000))
        keys += [q for q in (*QUEUES, "unacked", "unacked_index", "unacked_mutex") if client.exists(q)]
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        cleared.append(f"{len(keys)} keys under {settings.key_prefix}: in {url}")
        unbound = _unbind_queues(client, set(QUEUES))
        if unbound:
            cleared.append(f"{unbound} exchange bindings of its queues")
    return cleared


def _unbind_queues(client: Any, queues: set[str]) -> int:
    """Remove kombu's exchange bindings that route to ``queues``, and the binding deadlines left dangling.

    kombu keeps each binding (``routing key, pattern, queue`` joined by its separator) in the exchange's
    table ``_kombu.binding.<exchange>`` and, for queues that never expire, again in
    ``_kombu.binding_permanent.<exchange>``. Bindings of other deployments' queues in the same database
    stay, and Redis drops a set once it is empty. Expiring queues (the workers' control queues) give
    their exchange a deadline in ``_kombu.binding_deadlines``; one whose table is gone guards nothing
    (kombu's own sweep would drop it once overdue), so it goes too.
    """
    from kombu.transport.redis import Channel

    removed = 0
    for prefix in (Channel.keyprefix_queue, Channel.keyprefix_binding_permanent):
        for key in client.scan_iter(prefix % "*", count=1000):
            members = [m for m in client.smembers(key) if m.decode(errors="replace").split(Channel.sep)[-1] in queues]
            if members:
                removed += client.srem(key, *members)
    deadlines = Channel.keyprefix_binding_deadlines
    dangling = [e for e in client.zrange(deadlines, 0, -1) if not client.exists(Channel.keyprefix_queue % e.decode())]
    if dangling:
        client.zrem(deadlines, *dangling)
    return removed
