"""``make compose-up`` / ``make compose-down``: docker-compose.yml under podman-compose (or docker compose).

Before ``up``: the images (pipeline, trainer, local, and Redis and Prometheus from Debian's packages)
and the review service's secrets under ``.run/compose/`` (reviewer accounts, session secret), readable
by the containers' user only. Loopback ports come from ``HITL_COMPOSE_*_PORT`` (defaults 6379, 5000,
8080, 9090).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from hitl.stack import engine as engines

UID = 10001
PROJECT = "hitl"
REVIEWERS = ["alice", "bob", "carol"]


def secrets_dir(root: Path = engines.ROOT) -> Path:
    return root / ".run" / "compose"


def prepare_secrets(root: Path = engines.ROOT) -> Path:
    """Reviewer accounts (hashes for the service, passwords beside for people) and a session secret."""
    from hitl.review import reviewers

    folder = secrets_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    accounts, passwords = folder / "reviewers.json", folder / "reviewer-passwords.json"
    if not accounts.exists() or not passwords.exists():
        reviewers.generate(accounts, passwords, REVIEWERS, frozenset({"alice"}))
    secret = folder / "session-secret"
    if not secret.exists():
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_urlsafe(32))
    for path in (accounts, secret):
        path.chmod(0o600)
        if os.geteuid() == 0:  # mounted into the review container, which runs as UID 10001
            os.chown(path, UID, UID)
    return folder


def compose_command(engine: engines.Engine) -> list[str]:
    """podman-compose (the tools venv's, else PATH's) with the engine's global flags; or docker compose."""
    if engine.name == "docker":
        return ["docker", "compose"]
    found = engines.ROOT / ".venv-tools" / "bin" / "podman-compose"
    binary = str(found) if found.exists() else shutil.which("podman-compose")
    if binary is None:
        raise engines.EngineUnavailable("podman-compose is not installed (make tools)")
    return [binary, "--podman-args", " ".join(engine.global_args), "--podman-build-args", " ".join(engine.build_args)]


def run(engine: engines.Engine, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> int:
    argv = [*compose_command(engine), "--project-name", PROJECT, "--file", str(engines.ROOT / "docker-compose.yml")]
    return subprocess.run(
        [*argv, *args], cwd=engines.ROOT, env={**os.environ, **(env or {})}, timeout=timeout, check=False
    ).returncode


def up(engine: engines.Engine | None = None, env: dict[str, str] | None = None) -> None:
    engine = engine or engines.detect()
    version = engines.version()
    if not all(engine.image_exists(f"{name}:{version}") for name in engines.TARGETS.values()):
        engines.build(engine)  # compose names the images by version: `make image` refreshes them
    engines.build_compose_images(engine)
    prepare_secrets()
    # podman before 4.4 cannot start a container whose dependencies have dependencies of their own
    # ("not found in input list"), and podman-compose ignores health conditions before podman 4.6:
    # there, start every service at once; the bootstrap restarts until moto answers, the workers
    # retry until the queues exist.
    ordered = engine.name == "docker" or _podman_version(engine) >= (4, 6)
    if run(engine, "up", "--detach", *(() if ordered else ("--no-deps",)), env=env):
        raise RuntimeError("compose up failed")


def _podman_version(engine: engines.Engine) -> tuple[int, ...]:
    text = engine.run("version", "--format", "{{.Client.Version}}", check=False).stdout.strip()
    try:
        return tuple(int(part) for part in text.split("-")[0].split(".")[:2])
    except ValueError:
        return (0,)


def down(engine: engines.Engine | None = None) -> None:
    engine = engine or engines.detect()
    run(engine, "down", "--volumes")


def container_name(service: str) -> str:
    """podman-compose and docker compose name containers ``<project>_<service>_1`` / ``<project>-<service>-1``."""
    return f"{PROJECT}_{service}_1"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m hitl.stack.compose", description=(__doc__ or "").strip().splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{up,down}")
    commands.add_parser("up", help="build what is missing, write the secrets, start every service")
    commands.add_parser("down", help="stop and remove the services and their volumes")
    args = parser.parse_args(argv)
    {"up": up, "down": down}[args.command]()


if __name__ == "__main__":
    main()
