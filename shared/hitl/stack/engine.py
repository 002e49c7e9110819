"""The container engine and the images: ``make image``.

docker where a daemon answers; otherwise podman, with the flags a Debian 12 host with a hybrid cgroup
layout needs (``--runtime runc``: crun refuses it; explicit ulimits, or the runtime's setrlimit is
refused; host networking for builds). When the Dockerfile's base (``PYTHON_IMAGE``) cannot be pulled,
the base is made from Debian's archive with mmdebstrap and imported.

Every image is tagged ``<name>:<version>``, ``<name>:dev`` and ``<name>:src-<hash>``, the hash being
that of the build context's content: a test (or a second ``make image``) reuses images built from the
same sources instead of building them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# Dockerfile target -> image name.
TARGETS = {"runtime": "hitl-pipeline", "trainer": "hitl-pipeline-trainer", "local": "hitl-pipeline-local"}
CONFIGURED_BASE = "python:3.11-slim-bookworm"
DEBIAN_BASE = "localhost/debian-python:bookworm"
# What the Dockerfile copies (.dockerignore keeps everything else out): the content hash covers these.
CONTEXT = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "requirements.lock",
    "README.md",
    "deploy/image",
    "shared",
    "services",
)
SKIP_PARTS = {"__pycache__", ".mypy_cache", ".pytest_cache"}
# mmdebstrap: the packages the Dockerfile needs, merged /usr without the usrmerge package (it drags
# in perl), no manuals, docs or translations.
MMDEBSTRAP = (
    "mmdebstrap",
    "--variant=minbase",
    "--include=python3,python3-venv,python-is-python3,ca-certificates",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "bookworm",
)
PODMAN_LIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")


class EngineUnavailable(RuntimeError):
    """No container engine can run a container here; the message says why."""


@dataclass(frozen=True)
class Engine:
    name: str  # docker | podman
    global_args: tuple[str, ...] = ()
    run_args: tuple[str, ...] = ()
    build_args: tuple[str, ...] = ()

    def cmd(self, *args: str) -> list[str]:
        return [self.name, *self.global_args, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(self.cmd(*args))} failed ({result.returncode}): {result.stderr[-3000:]}")
        return result

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False, timeout=60).returncode == 0

    def image_size(self, ref: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())

    def describe(self) -> str:
        return " ".join([self.name, *self.global_args, "run", *self.run_args, "…"])


def docker_engine() -> Engine | None:
    if shutil.which("docker") is None:
        return None
    try:
        answered = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return None
    return Engine("docker") if answered else None


def podman_engine() -> Engine | None:
    if shutil.which("podman") is None:
        return None
    return Engine(
        "podman",
        global_args=("--runtime", "runc"),
        run_args=PODMAN_LIMITS,
        build_args=(*PODMAN_LIMITS, "--network", "host", "--volume", "/etc/ssl/certs:/etc/ssl/certs:ro"),
    )


def detect() -> Engine:
    """docker where a daemon answers, else podman; EngineUnavailable saying why when neither."""
    engine = docker_engine() or podman_engine()
    if engine is None:
        raise EngineUnavailable(
            "no container engine: docker has no daemon answering and podman is not installed "
            "(make apt installs podman, runc and mmdebstrap from deploy/apt-packages/containers.txt)"
        )
    return engine


def check_can_run(engine: Engine, image: str) -> None:
    """Run ``python -c pass`` in ``image`` the way the stack runs containers; EngineUnavailable if refused."""
    result = engine.run(
        "run", "--rm", *engine.run_args, "--network", "host", image, "python", "-c", "pass", check=False
    )
    if result.returncode != 0:
        raise EngineUnavailable(f"{engine.name} cannot run a container here: {result.stderr.strip()[-1500:]}")


def version(root: Path = ROOT) -> str:
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def _context_files(root: Path) -> Iterable[Path]:
    for entry in CONTEXT:
        path = root / entry
        if path.is_file():
            yield path
        elif path.is_dir():
            for found in sorted(path.rglob("*")):
                skipped = SKIP_PARTS.intersection(found.parts) or found.suffix == ".pyc"
                if found.is_file() and not skipped and not any(p.endswith(".egg-info") for p in found.parts):
                    yield found


def source_hash(root: Path = ROOT) -> str:
    """The build context's content (paths and bytes), short: equal sources, equal hash."""
    digest = hashlib.sha256()
    for path in _context_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def ensure_base(engine: Engine, configured: str = CONFIGURED_BASE) -> str:
    """The base image to build on: the configured one if present or pullable, else Debian's own."""
    if engine.image_exists(configured):
        return configured
    if engine.run("pull", configured, check=False, timeout=300).returncode == 0:
        return configured
    if engine.image_exists(DEBIAN_BASE):
        return DEBIAN_BASE
    if shutil.which("mmdebstrap") is None:
        raise EngineUnavailable(f"{configured} cannot be pulled and mmdebstrap is not installed (make apt)")
    with tempfile.TemporaryDirectory(prefix="hitl-base-") as folder:
        tarball = Path(folder) / "base.tar"
        subprocess.run([*MMDEBSTRAP, str(tarball)], check=True, capture_output=True, timeout=1200)
        engine.run("import", str(tarball), DEBIAN_BASE, timeout=600)
    return DEBIAN_BASE


@dataclass
class Built:
    tags: dict[str, list[str]] = field(default_factory=dict)  # target -> tags
    sizes: dict[str, int] = field(default_factory=dict)  # target -> bytes
    seconds: float = 0.0
    reused: bool = False
    base: str = ""


def tags_for(target: str, root: Path = ROOT, digest: str | None = None) -> list[str]:
    name = TARGETS[target]
    return [f"{name}:{version(root)}", f"{name}:dev", f"{name}:src-{digest or source_hash(root)}"]


def content_tag(target: str, root: Path = ROOT) -> str:
    return f"{TARGETS[target]}:src-{source_hash(root)}"


def build(
    engine: Engine,
    targets: Sequence[str] = tuple(TARGETS),
    root: Path = ROOT,
    reuse: bool = False,
    log: Path | None = None,
) -> Built:
    """Build ``targets`` (Dockerfile targets), tag them; with ``reuse``, keep images of the same sources."""
    built = Built()
    if reuse and all(engine.image_exists(content_tag(t, root)) for t in targets):
        built.reused = True
        for target in targets:
            built.tags[target] = [content_tag(target, root)]
            built.sizes[target] = engine.image_size(content_tag(target, root))
        return built
    built.base = ensure_base(engine)
    digest = source_hash(root)  # once: the sources as the build starts
    started = time.monotonic()
    for target in targets:
        tags = tags_for(target, root, digest)
        argv = engine.cmd(
            "build",
            *engine.build_args,
            "--build-arg",
            f"PYTHON_IMAGE={built.base}",
            "--target",
            target,
            *(arg for tag in tags for arg in ("--tag", tag)),
            "--file",
            str(root / "Dockerfile"),
            str(root),
        )
        if log is None:  # the engine's progress goes to the terminal
            result = subprocess.run(argv, timeout=3600, check=False)
        else:
            with open(log, "a") as out:
                result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=3600, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"building target {target} failed: {' '.join(argv)}" + (f" (log: {log})" if log else ""))
        built.tags[target] = tags
        built.sizes[target] = engine.image_size(tags[0])
    built.seconds = time.monotonic() - started
    return built


# Images of docker-compose's dependencies, from Debian's packages on the same base: name -> Containerfile.
COMPOSE_IMAGES = {
    "hitl-redis:bookworm": "deploy/compose/redis.Containerfile",
    "hitl-prometheus:bookworm": "deploy/compose/prometheus.Containerfile",
}


def build_compose_images(engine: Engine, root: Path = ROOT, log: Path | None = None) -> dict[str, int]:
    """Redis and Prometheus images from Debian's packages (kept when present); their sizes."""
    sizes = {}
    for image, containerfile in COMPOSE_IMAGES.items():
        if not engine.image_exists(image):
            base = ensure_base(engine, DEBIAN_BASE)
            argv = engine.cmd(
                "build", *engine.build_args, "--build-arg", f"BASE={base}", "--tag", image,
                "--file", str(root / containerfile), str(root / "deploy" / "compose"),
            )  # fmt: skip
            with open(log or os.devnull, "a") as out:
                if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False).returncode:
                    raise RuntimeError(f"building {image} failed: {' '.join(argv)}")
        sizes[image] = engine.image_size(image)
    return sizes


def summary(built: Built) -> dict[str, object]:
    return {
        "reused": built.reused,
        "base": built.base,
        "build_seconds": round(built.seconds, 1),
        "images": {
            target: {"tags": tags, "size_mb": round(built.sizes[target] / 1e6, 1)}
            for target, tags in built.tags.items()
        },
    }


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Build the pipeline's images with the engine that answers.")
    parser.add_argument("--target", action="append", choices=list(TARGETS), help="default: every target")
    parser.add_argument("--reuse", action="store_true", help="keep images built from the same sources")
    parser.add_argument("--log", type=Path, help="append the engine's build output here")
    args = parser.parse_args()
    engine = detect()
    print(f"engine: {engine.describe()}", flush=True)
    built = build(engine, args.target or tuple(TARGETS), reuse=args.reuse, log=args.log)
    print(json.dumps(summary(built), indent=2))


if __name__ == "__main__":
    main()
