"""The container images and the container stack, measured: image sizes, build time (as run: cold when
nothing is cached, cached otherwise), each service's start-to-ready time (from `<engine> run` to its
readiness probe passing) and resident memory at idle and under the 30-image load (the maximum over
samples every 0.5 s while the images go through detect → review → ingest).

Memory is summed over every process of a container (the Celery workers' children included): RSS,
and PSS (shared pages divided among the processes sharing them, closer to what a cgroup charges).
Writes ``bench/results/containers.json``.

    .venv/bin/python bench/bench_containers.py [--rebuild]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hitl.stack import containers, procs  # noqa: E402
from hitl.stack import engine as engines  # noqa: E402
from tests.containers.conftest import port_range  # noqa: E402
from tests.containers.flow import run_flow  # noqa: E402
from tests.integration.conftest import HITL, LocalStack  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "containers.json"
TARGETS = ("runtime", "trainer", "local")


def mb(value: int) -> float:
    return round(value / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rebuild", action="store_true", help="build even when images of these sources exist")
    args = parser.parse_args()
    engine = engines.detect()
    log = ROOT / ".run" / "bench-image-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    built = engines.build(engine, TARGETS, reuse=not args.rebuild, log=log)

    work = Path(tempfile.mkdtemp(prefix="hitl-bench-containers-"))
    redis_group = procs.ProcessGroup(work / "redis")
    redis_port = procs.free_port()
    server = shutil.which("redis-server") or "redis-server"
    redis_group.start(
        "redis", [server, "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--dir", str(work)]
    )
    procs.wait_until(lambda: procs.port_open(redis_port), 15, "redis")
    run_dir = work / "stack"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))},
        "HITL_RUN_DIR": str(run_dir),
        "HITL_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "HITL_KEY_PREFIX": "benchctr",
        "HITL_BUCKET": "hitl-bench-containers",
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
    names = [containers.REVIEW.name, *(s.name for s in containers.pipeline_services())]
    prefix = containers.container_prefix(run_dir)
    try:
        up = subprocess.run(
            [HITL, "containers", "up", "--no-build"], env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if up.returncode != 0:
            raise SystemExit(f"containers up failed:\n{up.stderr[-4000:]}")
        ready = json.loads(next(line for line in up.stderr.splitlines() if line.startswith('{"ready_seconds"')))
        time.sleep(10)  # settle: idle is after the first heartbeats and parameter reads

        def sample() -> dict[str, dict[str, int] | None]:
            return {n: containers.rss_bytes(engine, f"hitl-{prefix}-{n}") for n in names}

        idle = sample()
        peak: dict[str, dict[str, int]] = {n: {"rss": 0, "pss": 0} for n in names}
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                for name, value in sample().items():
                    if value:
                        for key in ("rss", "pss"):
                            peak[name][key] = max(peak[name][key], value[key])
                stop.wait(0.5)

        from hitl.stack.local import read_env_file

        stack = LocalStack(run_dir=run_dir, env={**env, **read_env_file(run_dir / "stack.env")})
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        flow = run_flow(stack, work / "images")
        stop.set()
        watcher.join()
    finally:
        subprocess.run([HITL, "containers", "down"], env=env, capture_output=True, check=False, timeout=300)
        redis_group.stop_all()

    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_at_start": os.getloadavg()},
        "engine": engine.describe(),
        "container_flags": " ".join(
            [
                "--network host --read-only",
                *(f"--tmpfs {path}:rw,size={size},mode=1777" for path, size in containers.TMPFS.items()),
                f"--user {containers.UID}:{containers.UID} --cap-drop ALL --security-opt no-new-privileges",
            ]
        ),
        "build": {
            "reused": built.reused,
            "seconds": round(built.seconds, 1),
            "base": built.base,
            "sizes_mb": {t: round(s / 1e6, 1) for t, s in built.sizes.items()},
        },
        "ready_seconds": ready["ready_seconds"],
        "memory_mib": {
            name: {
                "idle_rss": mb(idle[name]["rss"]) if idle[name] else None,
                "idle_pss": mb(idle[name]["pss"]) if idle[name] else None,
                "load_rss": mb(peak[name]["rss"]),
                "load_pss": mb(peak[name]["pss"]),
                "processes": idle[name]["processes"] if idle[name] else None,
            }
            for name in names
        },
        "flow": {"images": len(flow.ids), "loops": len(flow.routed), "dataset_lines": len(flow.labelled)},
        "flow_seconds": round(flow.seconds["flow"], 1),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
