"""Pipeline throughput: routed images/s through submit → detect → route, against a bare Celery task.

Both run in one session on the same Redis, the same worker settings (acks_late, prefetch 1,
``HITL_WORKER_CONCURRENCY`` processes) and the same machine. The pipeline uses the constant-time
``fixed`` model, so the figure is the pipeline's own cost: hashing, S3 (moto's server) writes and
reads, decoding, parameter lookup, routing, the record and the index. Writes
``bench/results/pipeline.json``.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import redis

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "pipeline.json"
RUN_DIR = ROOT / ".run" / "bench"
HITL = str(Path(sys.executable).parent / "hitl")
N_IMAGES = int(os.environ.get("BENCH_IMAGES", "400"))
N_NOOP = int(os.environ.get("BENCH_NOOP_TASKS", "2000"))
CONCURRENCY = os.environ.get("BENCH_CONCURRENCY", "2")
REDIS_URL = "redis://127.0.0.1:6379/12"


def images(n: int, offset: int = 0) -> list[bytes]:
    """Distinct 128×96 PNGs (a gradient with a per-image offset: realistic compression, small);
    images ``offset`` … ``offset + n - 1`` of one sequence (distinct below 23,296)."""
    import io

    from PIL import Image

    out = []
    base = np.add.outer(np.arange(96), np.arange(128)).astype(np.int64)
    for i in range(offset, offset + n):
        pixels = (np.stack([base + i, base * 2 + i // 7, base // 2 + i % 13], axis=-1) % 256).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def stack_env() -> dict[str, str]:
    from hitl.stack import procs

    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))},
        "HITL_RUN_DIR": str(RUN_DIR),
        "HITL_REDIS_URL": REDIS_URL,
        "HITL_KEY_PREFIX": "bench",
        "HITL_BUCKET": "hitl-bench",
        "HITL_DETECT_BACKEND": "fixed",
        "HITL_WORKER_CONCURRENCY": CONCURRENCY,
        "HITL_LOG_LEVEL": "WARNING",
        "HITL_STACK_MOTO_PORT": str(procs.free_port()),
        "HITL_REVIEW_PORT": str(procs.free_port()),
        "HITL_STACK_METRICS_BASE_PORT": "29301",
    }


def wait_until(check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        time.sleep(0.01)


def run_pipeline(env: dict[str, str]) -> dict[str, float]:
    from hitl import aws
    from hitl.settings import get_settings
    from hitl.stack.local import read_env_file
    from hitl.submit import Client

    os.environ.update(read_env_file(RUN_DIR / "stack.env"))
    os.environ.update({k: v for k, v in env.items() if k.startswith("HITL_")})
    get_settings.cache_clear()
    aws.reset_clients()
    settings = get_settings()
    client = Client(settings)
    data = images(N_IMAGES)
    # Warm-up: the first image pays for connection set-up in every process.
    warm = client.submit_bytes(images(1)[0][:-1] + b"\x00", "warm.png")
    del warm
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    started = time.perf_counter()
    named = [(f"b{i}.png", d) for i, d in enumerate(data)]
    ids = [s.image_id for s in client.submit_many(named, lambda x: client.submit_bytes(x[1], x[0], "bench"), jobs=4)]
    submitted = time.perf_counter()

    def all_routed() -> bool:
        pipe = r.pipeline()
        for image_id in ids:
            pipe.hget(settings.key("image", image_id), "state")
        return all(state == "detected" for state in pipe.execute())

    wait_until(all_routed, 600)
    finished = time.perf_counter()
    return {
        "images": N_IMAGES,
        "seconds": finished - started,
        "submit_seconds": submitted - started,
        "routed_images_per_second": N_IMAGES / (finished - started),
    }


def s3_call_costs(n: int = 200) -> dict[str, float]:
    """Milliseconds per S3 call on moto's server: the floor under the pipeline's per-image cost."""
    from hitl import aws
    from hitl.settings import get_settings

    s3, bucket = aws.client("s3"), get_settings().bucket
    record = b"{" + b'"x": 1, ' * 120 + b'"y": 2}'
    costs = {}
    started = time.perf_counter()
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"bench-probe/{i}.json", Body=record)
    costs["put_ms"] = (time.perf_counter() - started) / n * 1000
    started = time.perf_counter()
    for i in range(n):
        s3.get_object(Bucket=bucket, Key=f"bench-probe/{i}.json")["Body"].read()
    costs["get_ms"] = (time.perf_counter() - started) / n * 1000
    # Per image: the client's upload, the detector's download and the record's upload.
    costs["s3_calls_per_image"] = 3
    costs["s3_only_ceiling_images_per_second"] = 1000 / (2 * costs["put_ms"] + costs["get_ms"])
    return costs


def run_noop(env: dict[str, str]) -> dict[str, float]:
    from celery import Celery

    log = open(RUN_DIR / "logs" / "noop.log", "ab")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "noop_worker.py")],
        env={
            **env,
            **read_env(),
            "HITL_READY_FILE": str(RUN_DIR / "noop.ready"),
            "HITL_HEARTBEAT_FILE": str(RUN_DIR / "noop.hb"),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        wait_until((RUN_DIR / "noop.ready").exists, 60)
        r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        counter = "bench:noop:done"
        r.delete(counter)
        publisher = Celery(broker=REDIS_URL)
        publisher.send_task("bench.noop", args=["bench:noop:warm"], queue="noop")
        started = time.perf_counter()
        for _ in range(N_NOOP):
            publisher.send_task("bench.noop", args=[counter], queue="noop")
        published = time.perf_counter()
        wait_until(lambda: int(r.get(counter) or 0) >= N_NOOP, 600)
        finished = time.perf_counter()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    return {
        "tasks": N_NOOP,
        "seconds": finished - started,
        "publish_seconds": published - started,
        "tasks_per_second": N_NOOP / (finished - started),
    }


def read_env() -> dict[str, str]:
    from hitl.stack.local import read_env_file

    return read_env_file(RUN_DIR / "stack.env")


def main() -> None:
    global N_IMAGES, N_NOOP, CONCURRENCY
    import argparse

    parser = argparse.ArgumentParser(
        prog="python bench/bench_pipeline.py",
        description=(__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Each option's default comes from the environment variable named beside it.",
    )
    parser.add_argument("--images", type=int, default=N_IMAGES, help="images through the pipeline (BENCH_IMAGES)")
    parser.add_argument("--noop-tasks", type=int, default=N_NOOP, help="bare Celery tasks (BENCH_NOOP_TASKS)")
    parser.add_argument(
        "--concurrency", default=CONCURRENCY, help="worker processes, HITL_WORKER_CONCURRENCY (BENCH_CONCURRENCY)"
    )
    args = parser.parse_args()
    N_IMAGES, N_NOOP, CONCURRENCY = args.images, args.noop_tasks, str(args.concurrency)
    env = stack_env()
    redis.Redis.from_url(REDIS_URL).flushdb()
    subprocess.run([HITL, "stack", "down"], env=env, check=False, capture_output=True)
    subprocess.run([HITL, "stack", "reset", "--yes"], env=env, check=True, capture_output=True)
    subprocess.run([HITL, "stack", "up"], env=env, check=True)
    try:
        pipeline = run_pipeline(env)
        pipeline["moto_s3"] = s3_call_costs()  # type: ignore[assignment]
        # The baseline runs alone: the pipeline's workers are stopped first.
        from hitl.stack.procs import ProcessGroup

        for name in ("detector", "intake", "monitor", "beat", "review"):
            ProcessGroup(RUN_DIR).stop(name)
        noop = run_noop(env)
    finally:
        subprocess.run([HITL, "stack", "down"], env=env, check=False, capture_output=True)
        # The machine's Redis is left as it was found: the run's keys, queues and saved objects go.
        subprocess.run([HITL, "stack", "reset", "--yes"], env=env, check=False, capture_output=True)
        redis.Redis.from_url(REDIS_URL).flushdb()
    ratio = pipeline["routed_images_per_second"] / noop["tasks_per_second"]
    result = {
        "pipeline": pipeline,
        "bare_celery_noop": noop,
        "ratio": ratio,
        "target_ratio": 0.5,
        "worker_concurrency": int(CONCURRENCY),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
