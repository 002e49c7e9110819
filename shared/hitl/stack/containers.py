"""``make up CONTAINERS=1``: the local stack with every pipeline service run from the images.

Redis and moto's server are the process stack's own (``hitl.stack.local``); the bootstrap runs as a
one-shot container, then review, detector, dispatcher, ingestor, reconciler, intake, trainer, beat and
monitor each run as a container: host networking on loopback ports, the stack's environment, non-root,
read-only root filesystem with ``/tmp`` as tmpfs, no capabilities. Readiness is checked exactly as the
Kubernetes manifests check it: the startup probe ``python -m hitl.health --max-age 60`` then
``python -m hitl.health --ready`` inside the container for workers, ``GET /readyz`` for the review
service.

Each container's id is kept in ``<run_dir>/containers/<name>.cid``: ``down`` stops exactly those
(saving their logs to ``<run_dir>/logs/<name>.log``), then the processes of the stack.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from hitl.settings import Settings
from hitl.stack import engine as engines
from hitl.stack import local, persist, procs

UID = 10001
# The review service reads its files (reviewers, session secret, flows) from this read-only mount.
REVIEW_MOUNT = "/run/hitl-review"
# Not handed to containers: each container has its own (image defaults under /tmp).
PER_PROCESS = {
    "HITL_RUN_DIR",
    "HITL_HEARTBEAT_FILE",
    "HITL_READY_FILE",
    "HITL_METRICS_PORT",
    "HITL_METRICS_ADDR",
    "PROMETHEUS_MULTIPROC_DIR",
}
STOP_GRACE_SECONDS = 20
# What the Kubernetes manifests use too (tests/deploy/test_manifests_follow_containers.py checks it):
# the probes, and the writable mounts over the read-only root (emptyDirs there, tmpfs here).
LIVENESS_PROBE = ("python", "-m", "hitl.health", "--max-age", "60")
READINESS_PROBE = ("python", "-m", "hitl.health", "--ready")
REVIEW_LIVENESS_PATH = "/healthz"
REVIEW_READINESS_PATH = "/readyz"
PROBES = (LIVENESS_PROBE, READINESS_PROBE)
TMPFS = {"/tmp": "512m", "/tmp/prometheus": "64m"}  # noqa: S108 - the container's own tmpfs mounts


@dataclass(frozen=True)
class ContainerService:
    name: str
    argv: tuple[str, ...]
    target: str = "runtime"  # Dockerfile target (engines.TARGETS)
    metrics: bool = True


def pipeline_services() -> list[ContainerService]:
    """The same services, entrypoints and order as the process stack (``local.pipeline_services``)."""
    target = {"trainer": "trainer"}
    return [
        ContainerService(s.name, ("python", "-m", s.module), target.get(s.name, "runtime"), s.metrics)
        for s in local.pipeline_services()
    ]


BOOTSTRAP = ContainerService("bootstrap", ("hitl", "stack", "bootstrap"), metrics=False)
REVIEW = ContainerService("review", ("python", "-m", "services.review"), metrics=False)


@dataclass
class ContainerStack:
    stack: local.Stack
    engine: engines.Engine
    images: dict[str, str]  # target -> image reference
    started: dict[str, float] = field(default_factory=dict)  # name -> monotonic start time
    ready_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.stack.run_dir / "containers"

    def container_name(self, service: str) -> str:
        return f"hitl-{container_prefix(self.stack.run_dir)}-{service}"


def container_prefix(run_dir: Path) -> str:
    """Names unique per run directory: two stacks on one machine never share a container name."""
    import hashlib

    return hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:8]


def base_env(settings: Settings, moto_url: str) -> dict[str, str]:
    """What the process stack tells every service (``local.up``), for the same Redis and moto."""
    return {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_DEFAULT_REGION": local.REGION,
        **local.LOCAL_CREDENTIALS,
        "HITL_BUCKET": settings.bucket,
        "HITL_REDIS_URL": local.stack_redis_url(settings),
        "HITL_KEY_PREFIX": settings.key_prefix,
        "HITL_DETECT_BACKEND": settings.detect_backend,
    }


def _inherited_env() -> dict[str, str]:
    """HITL_* settings of the caller, as child processes of the process stack inherit them."""
    return {k: v for k, v in os.environ.items() if k.startswith("HITL_") and k not in PER_PROCESS}


def _env_file(cs: ContainerStack, name: str, env: dict[str, str]) -> Path:
    if any("\n" in v for v in env.values()):
        raise ValueError(f"{name}: an environment value spans lines; an env file cannot carry it")
    path = cs.folder / f"{name}.env"
    path.touch(mode=0o600)
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    return path


def _run(
    cs: ContainerStack,
    service: ContainerService,
    env: dict[str, str],
    *,
    detach: bool = True,
    mounts: tuple[str, ...] = (),
) -> str:
    """``<engine> run`` with the hardening of the manifests; returns the container name."""
    name = cs.container_name(service.name)
    cid = cs.folder / f"{service.name}.cid"
    cs.engine.run("rm", "--force", name, check=False)
    cid.unlink(missing_ok=True)
    argv = [
        "run",
        "--name",
        name,
        "--cidfile",
        str(cid),
        "--network",
        "host",
        "--read-only",
        *(arg for path, size in TMPFS.items() for arg in ("--tmpfs", f"{path}:rw,size={size},mode=1777")),
        "--user",
        f"{UID}:{UID}",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        *cs.engine.run_args,
        "--env-file",
        str(_env_file(cs, service.name, env)),
        "--label",
        f"hitl.stack={container_prefix(cs.stack.run_dir)}",
        *(arg for mount in mounts for arg in ("--volume", mount)),
    ]
    if detach:
        argv.append("--detach")
    cs.started[service.name] = time.monotonic()
    result = cs.engine.run(*argv, cs.images[service.target], *service.argv, check=False, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(
            f"{service.name}: {cs.engine.name} run failed: {result.stderr[-3000:]}{result.stdout[-3000:]}"
        )
    return result.stdout


def _review_files(cs: ContainerStack, settings: Settings) -> tuple[dict[str, str], str]:
    """The review service's files, readable by the container's user only; its env and mount."""
    from services.review import stackplug

    prepared = stackplug.prepare(settings)
    secrets = cs.folder / "review"
    shutil.rmtree(secrets, ignore_errors=True)
    secrets.mkdir(mode=0o700, parents=True)
    env = {}
    for key, value in prepared.items():
        if key.endswith("_FILE"):
            source = Path(value)
            target = secrets / source.name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            env[key] = f"{REVIEW_MOUNT}/{source.name}"
        else:
            env[key] = value
    if os.geteuid() == 0:  # the container runs as UID 10001 (rootful engine: the same UID on the host)
        for path in (secrets, *secrets.iterdir()):
            os.chown(path, UID, UID)
    else:  # a rootless engine maps the caller to the container's root, not to 10001
        secrets.chmod(0o755)
        for path in secrets.iterdir():
            path.chmod(0o644)
    return env, f"{secrets}:{REVIEW_MOUNT}:ro"


def worker_ready(cs: ContainerStack, name: str) -> bool:
    """Ready as Kubernetes sees it: the startup probe (the liveness command) passed, then readiness."""
    container = cs.container_name(name)
    return all(cs.engine.run("exec", container, *probe, check=False).returncode == 0 for probe in PROBES)


def running(cs: ContainerStack, name: str) -> bool:
    result = cs.engine.run("inspect", "--format", "{{.State.Running}}", cs.container_name(name), check=False)
    return result.stdout.strip() == "true"


def logs(engine: engines.Engine, container: str, tail: int = 200) -> str:
    result = engine.run("logs", "--tail", str(tail), container, check=False)
    return result.stdout + result.stderr


def up(
    settings: Settings,
    run_dir: Path,
    images: dict[str, str] | None = None,
    engine: engines.Engine | None = None,
    services: list[ContainerService] | None = None,
) -> ContainerStack:
    """Redis and moto as processes, the bootstrap as a one-shot container, the services as containers."""
    engine = engine or engines.detect()
    images = images or {t: engines.content_tag(t) for t in engines.TARGETS}
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"run_dir": run_dir})
    stack = local.Stack(settings=settings, run_dir=run_dir)
    cs = ContainerStack(stack=stack, engine=engine, images=images)
    cs.folder.mkdir(parents=True, exist_ok=True)
    local._ensure_redis(stack, local.stack_redis_url(settings))
    moto_url = local._start_moto(stack)
    persist.restore_storage(run_dir, moto_url)  # what the last `make down` saved
    stack.urls["MOTO"] = moto_url
    stack.env.update({**_inherited_env(), **base_env(settings, moto_url)})

    out = _run(cs, BOOTSTRAP, stack.env, detach=False)
    resources = json.loads(out)  # logs go to stderr: stdout is the JSON alone
    stack.urls["UPLOADS_QUEUE"] = resources["uploads_queue_url"]
    stack.urls["EVENTS_QUEUE"] = resources["events_queue_url"]
    _remove(cs, BOOTSTRAP.name)
    persist.restore_messages(run_dir, moto_url)

    from services.review import stackplug

    review_env, mount = _review_files(cs, settings)
    port = settings.review_port
    url = f"http://127.0.0.1:{port}"
    _run(
        cs,
        REVIEW,
        {**stack.env, **review_env, "HITL_REVIEW_HOST": "127.0.0.1", "HITL_REVIEW_PORT": str(port)},
        mounts=(mount,),
    )
    for line in stackplug.stack_env_lines(url, settings):
        key, _, value = line.partition("=")
        stack.env[key] = value

    for index, service in enumerate(services if services is not None else pipeline_services()):
        env = dict(stack.env)
        if service.metrics:
            metrics_port = settings.stack_metrics_base_port + index
            env.update({"HITL_METRICS_PORT": str(metrics_port), "HITL_METRICS_ADDR": "127.0.0.1"})
            stack.urls[f"METRICS_{service.name.upper()}"] = f"http://127.0.0.1:{metrics_port}/metrics"
        else:
            env["HITL_METRICS_PORT"] = "0"
        _run(cs, service, env)
    local.write_env_file(stack)
    return cs


def wait_ready(cs: ContainerStack, names: list[str], timeout: float = 180.0) -> dict[str, float]:
    """Wait for every service's readiness probe; fail at once, with its log, if a container exits.

    Returns each service's start-to-ready time in seconds (probed every 0.5 s)."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        for name in list(pending):
            if name == REVIEW.name:
                url = cs.stack.env["HITL_REVIEW_URL"]
                try:
                    ok = procs.http_ok(f"{url}{REVIEW_READINESS_PATH}")
                except OSError:
                    ok = False
            else:
                ok = worker_ready(cs, name)
            if ok:
                cs.ready_seconds[name] = time.monotonic() - cs.started[name]
                pending.remove(name)
            elif not running(cs, name):
                raise RuntimeError(f"{name} exited:\n{logs(cs.engine, cs.container_name(name))[-4000:]}")
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(pending)}")
        if pending:
            time.sleep(0.5)
    return cs.ready_seconds


def _remove(cs: ContainerStack, name: str) -> None:
    cs.engine.run("rm", "--force", cs.container_name(name), check=False)
    (cs.folder / f"{name}.cid").unlink(missing_ok=True)


def rss_bytes(engine: engines.Engine, container: str) -> dict[str, int] | None:
    """Resident memory of every process in the container, summed: RSS, and PSS (shared pages split)."""
    result = engine.run("inspect", "--format", "{{.State.Pid}}", container, check=False)
    try:
        root = int(result.stdout.strip())
    except ValueError:
        return None
    pids, queue = [], [root]
    while queue:
        pid = queue.pop()
        pids.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                queue.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    total = {"rss": 0, "pss": 0, "processes": 0}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("Rss", "Pss"):
                    total[key.lower()] += int(value.split()[0]) * 1024
            total["processes"] += 1
        except OSError:
            continue
    return total


def memory(cs: ContainerStack, names: list[str]) -> dict[str, dict[str, int] | None]:
    return {name: rss_bytes(cs.engine, cs.container_name(name)) for name in names}


def down(run_dir: Path, engine: engines.Engine | None = None) -> list[str]:
    """Stop the containers started for ``run_dir`` (their logs saved), then the stack's processes.

    The supervisor stops first, then the workers together in one ``stop`` call (in the slowest one's
    grace, not the sum of all), then the review service: the order of ``local.down``."""
    run_dir = run_dir.resolve()
    folder = run_dir / "containers"
    stopped: list[str] = []
    cids = {p.stem: p for p in sorted(folder.glob("*.cid"))} if folder.exists() else {}
    if cids:
        engine = engine or engines.detect()
        log_dir = run_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        tiers = [*local.STOP_TIERS, tuple(name for name in cids if name not in local.STOP_ORDER)]
        for tier in tiers:
            present = {name: cids.pop(name).read_text().strip() for name in tier if name in cids}
            ids = [cid for cid in present.values() if cid]
            if ids:
                engine.run("stop", "--time", str(STOP_GRACE_SECONDS), *ids, check=False, timeout=120)
                for name, container in present.items():
                    if container:
                        (log_dir / f"{name}.log").write_text(logs(engine, container, tail=5000))
                engine.run("rm", "--force", *ids, check=False)
                stopped += [name for name, container in present.items() if container]
            for name in present:
                (folder / f"{name}.cid").unlink(missing_ok=True)
    return stopped + local.down(run_dir)
