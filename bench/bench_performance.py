"""Performance: overhead, latency, backlog, scaling — one local stack, one run, side by side.

Phases (``BENCH_PHASES``, comma-separated; default all, in this order):

- ``overhead``: routed images/s through submit → detect → route with the constant-time ``fixed``
  model, and a bare Celery task (``bench/noop_worker.py``) making the same S3 calls (the client's
  upload, the image read, a record of the pipeline's record size written), on the same Redis, moto
  and worker concurrency, taking turns for ``BENCH_OVERHEAD_ROUNDS`` rounds; moto's cost per S3 call
  measured alongside.
- ``latency``: open-loop paced submission at 50 % and 90 % of the rate just measured; submit → record
  (the index says ``detected`` only after the record is in S3) for every image.
- ``backlog``: ``BENCH_BACKLOG_TASKS`` images queued while the detector is stopped, then drained:
  Redis memory (``INFO memory``) per queued task and per indexed image, the detector's RSS (its
  Celery main process and children) before, during and after, and every image accounted for.
  (``bench/queue_footprint.py`` measures the per-task Redis figure alone, without the stack.)
- ``model``: the embedded model: v1 trained on seed scenes; detector throughput with 1 and 2 worker
  processes (one model thread each), and raw in-process ``predict`` on the same images and number of
  processes, taking turns for ``BENCH_MODEL_ROUNDS`` rounds.
- ``learning``: a simulated reviewer answers through the portal's HTTP API: answer → labelled example
  in S3; the answer that reaches Minimum-Untrained-Images → the detector serving the promoted version
  trained on a 200-image dataset.

Writes ``bench/results/performance.json`` and ``performance.png``. With ``BENCH_PYSPY`` (a py-spy
binary, ``make profile``) the overhead phase also samples the detector's processes and writes the
hottest functions to ``bench/results/profile.json`` under ``BENCH_PROFILE_LABEL``.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import images as gradient_images
from bench_pipeline import s3_call_costs
from isolated_stack import isolated_stack_env

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "performance.json"
PLOT = ROOT / "bench" / "results" / "performance.png"
PROFILE = ROOT / "bench" / "results" / "profile.json"
RUN_DIR = ROOT / ".run" / "bench-performance"
HITL = str(Path(sys.executable).parent / "hitl")

PHASES = os.environ.get("BENCH_PHASES", "overhead,latency,backlog,model,learning").split(",")
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "2"))
OVERHEAD_IMAGES = int(os.environ.get("BENCH_OVERHEAD_IMAGES", "1200"))
OVERHEAD_ROUNDS = int(os.environ.get("BENCH_OVERHEAD_ROUNDS", "8"))
SUBMIT_JOBS = 4
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "20"))
BACKLOG_TASKS = int(os.environ.get("BENCH_BACKLOG_TASKS", "20000"))
BACKLOG_WARM = 200  # drained before "before" is read: the processes have loaded what they use
SCALING_IMAGES = int(os.environ.get("BENCH_SCALING_IMAGES", "40"))  # per worker process and round
MODEL_ROUNDS = int(os.environ.get("BENCH_MODEL_ROUNDS", "3"))
SEED_V1, DATASET_SEED, TEST_SCENES = 10, 170, 50
ANSWERS = int(os.environ.get("BENCH_ANSWERS", "30"))  # Minimum-Untrained-Images: 170 seed + 30 = 200
POLL = 0.01
PROBES = 240  # at most, one a second: the new version must serve within four minutes
# Processes whose CPU time per image the overhead and learning phases report.
CPU_WATCHED = ("detector", "moto", "redis", "dispatcher", "ingestor", "review")

# Phases before ``learning``: nothing is low-confidence (threshold 0), so routing runs in full (the
# audit counter included, every 1000th image sampled) without starting hundreds of review loops.
THROUGHPUT_PARAMS = {"Minimum-Label-Detection-Confidence": "0", "Human-Sampling-Interval": "1000"}
# The model phase measures the detector alone: the dispatcher and the review service (their own pods in
# a deployment) would otherwise share the two cores with it, starting loops for scenes without a face.
MODEL_PARAMS = {"Enable-A2I-Workflow": "false"}
LEARNING_PARAMS = {
    "Enable-A2I-Workflow": "true",
    "Minimum-Label-Detection-Confidence": "100",  # every image to a reviewer: each answer is a label
    "Enable-Automatic-Human-Sampling": "false",
    "Minimum-Untrained-Images": str(ANSWERS),
    "Enable-Automatic-Training": "true",
}
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    array = np.asarray(values)
    return {
        "n": len(values),
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "p99": float(np.percentile(array, 99)),
        "max": float(array.max()),
        "mean": float(array.mean()),
    }


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f}s (logs: {RUN_DIR / 'logs'})")
        time.sleep(interval)


def small_images(n: int, offset: int = 0) -> list[bytes]:
    """Distinct 64×64 PNGs (the smallest accepted side): the backlog's images, cheap for moto."""
    from PIL import Image

    out = []
    base = np.add.outer(np.arange(64), np.arange(64)).astype(np.int64)
    for i in range(offset, offset + n):
        pixels = np.stack([base + i % 251, base * 3 + (i // 251) % 251, base // 2 + i // 63001], axis=-1) % 256
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


# --- the stack --------------------------------------------------------------------------------


def stack_env() -> dict[str, str]:
    # INFO memory deltas are this run's alone: the stack has its own redis-server.
    return isolated_stack_env(
        RUN_DIR, "perf", "hitl-perf", HITL_DETECT_BACKEND="fixed", HITL_WORKER_CONCURRENCY=str(CONCURRENCY)
    )


class Bench:
    def __init__(self, env: dict[str, str]) -> None:
        from hitl import aws
        from hitl.settings import get_settings
        from hitl.stack.local import read_env_file
        from hitl.stack.procs import ProcessGroup
        from hitl.submit import Client

        self.stack_file = read_env_file(RUN_DIR / "stack.env")
        os.environ.update({k: v for k, v in env.items() if k.startswith("HITL_")})
        os.environ.update(self.stack_file)
        get_settings.cache_clear()
        aws.reset_clients()
        self.env = env
        self.settings = get_settings()
        self.redis = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        self.client = Client(self.settings)
        self.group = ProcessGroup(RUN_DIR)
        self.s3 = aws.client("s3")
        self.result: dict[str, Any] = {}

    # --- helpers ---------------------------------------------------------------------------------
    def set_params(self, values: dict[str, str]) -> None:
        from hitl.params import ParameterStore

        store = ParameterStore(self.settings)
        for name, value in values.items():
            store.set(name, value)

    def wait_params_applied(self) -> None:
        """Every process re-reads the parameters within ``params_cache_seconds``."""
        time.sleep(self.settings.params_cache_seconds + 1)

    def states(self, ids: list[str], field: str = "state") -> list[str | None]:
        out: list[str | None] = []
        for start in range(0, len(ids), 2000):
            pipe = self.redis.pipeline(transaction=False)
            for image_id in ids[start : start + 2000]:
                pipe.hget(self.settings.key("image", image_id), field)
            out.extend(pipe.execute())
        return out

    def watch_detected(
        self,
        ids: list[str],
        seen: dict[str, float],
        stop: threading.Event,
        due: list[float] | None = None,
        interval: float = POLL,
    ) -> threading.Thread:
        """A thread noting when each image's index entry first says ``detected`` (after its record);
        with ``due``, an image is asked for only from its submission slot on."""
        pending = list(range(len(ids)))

        def run() -> None:
            nonlocal pending
            while pending and not stop.is_set():
                now = time.perf_counter()
                asked = [k for k in pending if due is None or due[k] <= now]
                states = self.states([ids[k] for k in asked])
                now = time.perf_counter()
                for k, state in zip(asked, states, strict=True):
                    if state == "detected":
                        seen[ids[k]] = now
                pending = [k for k in pending if ids[k] not in seen]
                time.sleep(interval)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def wait_detected(self, ids: list[str], timeout: float, interval: float = 0.02) -> None:
        """Until every image is detected. The queue is first in, first out: the last few submitted are
        watched until they are done, then the rest is checked, so that the watching itself costs Redis
        and this process next to nothing (the bare task's baseline polls one counter)."""
        pending = list(ids)

        def done() -> bool:
            nonlocal pending
            tail = pending[-8:]
            if any(s != "detected" for s in self.states(tail)):
                return False
            pending = [i for i, s in zip(pending, self.states(pending), strict=True) if s != "detected"]
            return not pending

        wait_for(done, timeout, f"{len(ids)} images detected", interval)

    def submit(self, items: list[tuple[str, bytes]], jobs: int = SUBMIT_JOBS) -> list[str]:
        def one(item: tuple[str, bytes]) -> str:
            return self.client.submit_bytes(item[1], item[0], "bench").image_id or ""

        return list(self.client.submit_many(items, one, jobs=jobs))

    def detector_pids(self) -> list[int]:
        main = self.group.pid("detector")
        return process_tree(main) if main is not None else []

    def cpu_seconds(self, names: Iterable[str]) -> dict[str, float]:
        """CPU time so far of each named stack process with its children (user + system)."""
        out = {}
        for name in names:
            main = self.group.pid(name)
            out[name] = sum(cpu_of(pid) for pid in process_tree(main)) if main is not None else 0.0
        return out

    def detector_rss_mb(self) -> float:
        total = 0
        for pid in self.detector_pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024

    def used_memory(self) -> int:
        return int(self.redis.info("memory")["used_memory"])

    def restart_detector(self, **extra: str) -> None:
        ready = RUN_DIR / "health" / "detector" / "ready"
        ready.unlink(missing_ok=True)
        self.group.restart("detector", extra)
        wait_for(ready.exists, 90, "the detector's ready file", 0.1)

    # --- 1. overhead -------------------------------------------------------------------------
    def overhead(self) -> None:
        """The pipeline and the same-I/O bare task take turns, ``OVERHEAD_ROUNDS`` times each on
        ``OVERHEAD_IMAGES`` / rounds images, in alternating order, so that a drift of the shared
        machine (moto's speed, other processes, CPU steal) falls on both sides alike; the ratio is of
        the total rates, and each round's is kept."""
        per_round = OVERHEAD_IMAGES // OVERHEAD_ROUNDS
        data = gradient_images(2 * OVERHEAD_IMAGES + 8)
        warm = [(f"warm{i}.png", d) for i, d in enumerate(data[-8:])]
        self.wait_detected(self.submit(warm), 120)
        pipeline_runs: list[dict[str, Any]] = []
        bare_runs: list[dict[str, Any]] = []
        record_bytes = 0
        profiler = self.start_profiler()
        bare = self.start_bare_worker()
        try:
            for round_index in range(OVERHEAD_ROUNDS):
                first = round_index * per_round
                bare_data = data[OVERHEAD_IMAGES + first : OVERHEAD_IMAGES + first + per_round]
                # A B, B A, A B, …: a steady drift of the machine's speed favours neither side.
                if round_index % 2 == 0 or not record_bytes:
                    pipeline_runs.append(self.pipeline_round(data[first : first + per_round], round_index))
                    record_bytes = record_bytes or pipeline_runs[0]["record_bytes"]
                    bare_runs.append(self.bare_round(bare_data, first, record_bytes, bare.pid))
                else:
                    bare_runs.append(self.bare_round(bare_data, first, record_bytes, bare.pid))
                    pipeline_runs.append(self.pipeline_round(data[first : first + per_round], round_index))
                say(
                    f"round {round_index + 1}/{OVERHEAD_ROUNDS}: pipeline "
                    f"{pipeline_runs[-1]['routed_images_per_second']:.1f}/s, same-I/O bare task "
                    f"{bare_runs[-1]['tasks_per_second']:.1f}/s"
                )
        finally:
            self.stop_bare_worker(bare)
        self.stop_profiler(profiler)
        pipeline = combine_rounds(pipeline_runs, "routed_images_per_second")
        same_io = combine_rounds(bare_runs, "tasks_per_second")
        pipeline["record_bytes"] = same_io["record_bytes"] = record_bytes
        cpu_seconds_per_image = sum(pipeline["cpu_ms_per_image"].values()) / 1000
        pipeline["cpu_busy_share_of_machine"] = (
            cpu_seconds_per_image * pipeline["routed_images_per_second"] / (os.cpu_count() or 1)
        )
        moto = s3_call_costs()
        say(
            f"pipeline {pipeline['routed_images_per_second']:.1f}/s, same-I/O bare task "
            f"{same_io['tasks_per_second']:.1f}/s over {OVERHEAD_ROUNDS} rounds; moto put {moto['put_ms']:.1f} ms"
        )
        pipeline_rate = pipeline["routed_images_per_second"]
        self.result["overhead"] = {
            "pipeline": pipeline,
            "same_io_bare_task": same_io,
            "moto_s3": moto,
            "worker_concurrency": CONCURRENCY,
            "submit_threads": SUBMIT_JOBS,
            "rounds": OVERHEAD_ROUNDS,
            "ratio": pipeline_rate / same_io["tasks_per_second"],
            "ratio_per_round": [
                p["routed_images_per_second"] / b["tasks_per_second"]
                for p, b in zip(pipeline_runs, bare_runs, strict=True)
            ],
            "pipeline_over_moto_ceiling": pipeline_rate / moto["s3_only_ceiling_images_per_second"],
            "same_io_over_moto_ceiling": same_io["tasks_per_second"] / moto["s3_only_ceiling_images_per_second"],
        }
        self.max_rate = pipeline_rate

    def pipeline_round(self, data: list[bytes], round_index: int) -> dict[str, Any]:
        named = [(f"b{round_index}-{i}.png", d) for i, d in enumerate(data)]
        cpu_before, own_before = self.cpu_seconds(CPU_WATCHED), sum(os.times()[:2])
        started = time.perf_counter()
        ids = self.submit(named)
        submitted = time.perf_counter()
        self.wait_detected(ids, 600)
        finished = time.perf_counter()
        cpu = cpu_delta(cpu_before, self.cpu_seconds(CPU_WATCHED), len(data))
        cpu["submitting client"] = (sum(os.times()[:2]) - own_before) / len(data) * 1000
        record = self.s3.get_object(Bucket=self.settings.bucket, Key=self.client_record_key(ids[0]))["Body"].read()
        return {
            "images": len(data),
            "seconds": finished - started,
            "submit_seconds": submitted - started,
            "routed_images_per_second": len(data) / (finished - started),
            "record_bytes": len(record),
            "cpu_ms_per_image": cpu,
        }

    def client_record_key(self, image_id: str) -> str:
        from hitl.adapters.records import RecordStore

        return RecordStore(self.settings).key_for(image_id)

    def start_bare_worker(self) -> subprocess.Popen[bytes]:
        """``bench/noop_worker.py`` on queue ``noop``, warmed up with 8 same-I/O tasks."""
        ready = RUN_DIR / "noop.ready"
        ready.unlink(missing_ok=True)
        log = open(RUN_DIR / "logs" / "noop.log", "ab")  # noqa: SIM115 - handed to the child
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "noop_worker.py")],
            env={**self.env, **self.stack_file, "HITL_READY_FILE": str(ready),
                 "HITL_HEARTBEAT_FILE": str(RUN_DIR / "noop.hb")},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        log.close()
        try:
            wait_for(ready.exists, 60, "the bare worker")
            self.bare_round(gradient_images(8), -8, 880, worker.pid)
        except BaseException:
            self.stop_bare_worker(worker)
            raise
        return worker

    def stop_bare_worker(self, worker: subprocess.Popen[bytes]) -> None:
        worker.terminate()
        worker.wait(timeout=60)

    def bare_round(self, data: list[bytes], first: int, record_bytes: int, worker_pid: int) -> dict[str, Any]:
        """The client's upload, as submission does; the bare worker reads it and writes the record."""
        from hitl.celery_app import app

        bucket = self.settings.bucket
        counter = self.settings.key("bench", "same_io")

        def one(item: tuple[int, bytes]) -> None:
            index, body = item
            key = f"bench-io/{index}.png"
            self.s3.put_object(Bucket=bucket, Key=key, Body=body)
            app.send_task(
                "bench.same_io",
                args=[counter, bucket, key, f"bench-io/records/{index}.json", record_bytes],
                queue="noop",
            )

        self.redis.delete(counter)
        watched = {"moto": self.group.pid("moto"), "redis": self.group.pid("redis"), "bare worker": worker_pid}

        def cpu_now() -> dict[str, float]:
            return {n: sum(cpu_of(p) for p in process_tree(pid)) for n, pid in watched.items() if pid}

        cpu_before, own_before = cpu_now(), sum(os.times()[:2])
        started = time.perf_counter()
        with ThreadPoolExecutor(SUBMIT_JOBS) as pool:
            list(pool.map(one, enumerate(data, start=first)))
        submitted = time.perf_counter()
        wait_for(lambda: int(self.redis.get(counter) or 0) >= len(data), 600, "bare tasks", 0.02)
        finished = time.perf_counter()
        cpu = cpu_delta(cpu_before, cpu_now(), len(data))
        cpu["submitting client"] = (sum(os.times()[:2]) - own_before) / len(data) * 1000
        return {
            "tasks": len(data),
            "seconds": finished - started,
            "submit_seconds": submitted - started,
            "tasks_per_second": len(data) / (finished - started),
            "record_bytes": record_bytes,
            "cpu_ms_per_image": cpu,
        }

    # --- 6. profile ------------------------------------------------------------------------------
    def start_profiler(self) -> list[tuple[subprocess.Popen[bytes], Path]]:
        binary = os.environ.get("BENCH_PYSPY")
        if not binary:
            return []
        running = []
        for pid in self.detector_pids()[1:]:  # the children run the tasks
            out = RUN_DIR / f"pyspy-{pid}.txt"
            argv = [binary, "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--rate", "200"]
            running.append((subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))
        time.sleep(1.0)  # attached before the timed run starts
        return running

    def stop_profiler(self, running: list[tuple[subprocess.Popen[bytes], Path]]) -> None:
        if not running:
            return
        for proc, _ in running:
            proc.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        for proc, _ in running:
            proc.wait(timeout=60)
        self.result["profile"] = summarise_profile([out for _, out in running])

    # --- 2. latency ------------------------------------------------------------------------------
    def latency(self) -> None:
        from hitl.domain.images import content_id

        rate_max = getattr(self, "max_rate", None) or float(os.environ.get("BENCH_MAX_RATE", "30"))
        out: dict[str, Any] = {"max_rate_images_per_second": rate_max, "seconds_per_level": LATENCY_SECONDS}
        offset = 2 * OVERHEAD_IMAGES + 8  # after the overhead phase's images
        for share in (0.5, 0.9):
            rate = share * rate_max
            n = max(10, round(rate * LATENCY_SECONDS))
            data = gradient_images(n, offset)
            offset += n
            ids = [content_id(d) for d in data]
            seen: dict[str, float] = {}
            stop = threading.Event()
            start = time.perf_counter() + 0.5
            watcher = self.watch_detected(ids, seen, stop, due=[start + k / rate for k in range(n)])

            def one(index: int, data: list[bytes] = data, start: float = start, rate: float = rate) -> float:
                # Open loop: each image has its slot; a late submission counts from its slot.
                time.sleep(max(0.0, start + index / rate - time.perf_counter()))
                self.client.submit_bytes(data[index], f"lat{index}.png", "bench")
                return time.perf_counter() - (start + index / rate)

            with ThreadPoolExecutor(16) as pool:
                lateness = list(pool.map(one, range(n)))
            wait_for(lambda ids=ids, seen=seen: len(seen) >= len(ids), 300, "paced images")
            stop.set()
            watcher.join()
            latencies = [seen[i] - (start + k / rate) for k, i in enumerate(ids)]
            level = {
                "rate_images_per_second": rate,
                "images": n,
                "submit_to_record_s": percentiles(latencies),
                "submission_lateness_s": percentiles(lateness),
                "samples_s": [round(x, 4) for x in latencies],
            }
            out[f"{int(share * 100)}pct"] = level
            say(f"latency at {share:.0%} ({rate:.1f}/s): p50 {level['submit_to_record_s']['p50']:.3f}s "
                f"p99 {level['submit_to_record_s']['p99']:.3f}s")
        out["poll_interval_s"] = POLL
        self.result["latency"] = out

    # --- 3. backlog ------------------------------------------------------------------------------
    def backlog(self) -> None:
        from hitl.domain.images import content_id

        self.group.stop("detector")
        data = small_images(BACKLOG_TASKS)
        ids = [content_id(d) for d in data]
        say(f"backlog: submitting {BACKLOG_TASKS} images with the detector stopped")
        before_submit = self.used_memory()
        started = time.perf_counter()
        submitted_ids = self.submit([(f"q{i}.png", d) for i, d in enumerate(data)], jobs=8)
        submit_seconds = time.perf_counter() - started
        queued_memory = self.used_memory()
        queue_length = int(self.redis.llen("detect"))
        queue_bytes = int(self.redis.memory_usage("detect", samples=0) or 0)
        sample_message = json.loads(self.redis.lindex("detect", 0) or "{}")
        message_parts = {
            "message_bytes": len(json.dumps(sample_message)),
            "body_bytes": len(sample_message.get("body", "")),
            "body_encoding": (sample_message.get("properties") or {}).get("body_encoding"),
            "headers_bytes": len(json.dumps(sample_message.get("headers"))),
            "properties_bytes": len(json.dumps(sample_message.get("properties"))),
        }
        # The messages' own share, by INFO too: the list is set aside (DUMP, DEL) and put back
        # (RESTORE) while nothing consumes it.
        raw = redis.Redis.from_url(self.settings.redis_url)
        dumped = raw.dump("detect")
        raw.delete("detect")
        without_queue = self.used_memory()
        raw.restore("detect", 0, dumped)
        if int(raw.llen("detect")) != queue_length:
            raise RuntimeError("the detect list did not come back whole")
        del dumped
        say(f"queued {queue_length} in {submit_seconds:.0f}s; Redis +{(queued_memory - before_submit) / 1e6:.1f} MB")

        samples: list[dict[str, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append({
                    "t": time.perf_counter() - started_drain,
                    "rss_mb": self.detector_rss_mb(),
                    "queued": float(self.redis.llen("detect")),
                })
                time.sleep(1.0)

        self.restart_detector()
        started_drain = time.perf_counter()
        cold_rss = self.detector_rss_mb()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        wait_for(lambda: int(self.redis.llen("detect")) <= BACKLOG_TASKS - BACKLOG_WARM, 300, "warm-up", 0.2)
        warm_rss = self.detector_rss_mb()
        wait_for(lambda: int(self.redis.llen("detect")) == 0, 3600, "the backlog drain", 0.5)
        self.wait_detected(ids, 300, 0.5)
        drained = time.perf_counter()
        time.sleep(2.0)
        after_rss = self.detector_rss_mb()
        stop.set()
        sampler.join()
        drained_memory = self.used_memory()

        states = self.states(ids)
        records = set()
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=self.settings.records_prefix):
            records.update(item["Key"] for item in page.get("Contents", []))
        lost = [
            i for i, s in zip(ids, states, strict=True) if s != "detected" or self.client_record_key(i) not in records
        ]
        dead = int(self.redis.llen(self.settings.key("dlq", "detect")))
        during = [s["rss_mb"] for s in samples if s["queued"] < BACKLOG_TASKS - BACKLOG_WARM]
        out = {
            "tasks": BACKLOG_TASKS,
            "submitted": len([i for i in submitted_ids if i]),
            "queue_length_when_full": queue_length,
            "submit_seconds": submit_seconds,
            "drain_seconds": drained - started_drain,
            "drain_images_per_second": BACKLOG_TASKS / (drained - started_drain),
            "redis_used_memory_mb": {
                "before": before_submit / 1e6, "queued": queued_memory / 1e6, "drained": drained_memory / 1e6,
            },
            "redis_kb_per_queued_image": (queued_memory - before_submit) / BACKLOG_TASKS / 1024,
            "redis_kb_per_queued_task": (queued_memory - without_queue) / max(1, queue_length) / 1024,
            "redis_kb_per_queued_task_memory_usage": queue_bytes / max(1, queue_length) / 1024,
            "queued_message_parts": message_parts,
            "redis_kb_per_indexed_image": (drained_memory - before_submit) / BACKLOG_TASKS / 1024,
            "worker_rss_mb": {
                "cold_start": cold_rss,
                "before": warm_rss,
                "max_during": max(during) if during else None,
                "after": after_rss,
            },
            "worker_rss_growth_ratio": (after_rss - warm_rss) / warm_rss,
            "lost": len(lost),
            "lost_examples": lost[:5],
            "dead_lettered": dead,
            "samples": samples,
        }
        say(f"drained in {out['drain_seconds']:.0f}s; lost {len(lost)}; RSS {warm_rss:.0f} → {after_rss:.0f} MB")
        self.result["backlog"] = out

    # --- 4. the embedded model ------------------------------------------------------------------
    def model(self) -> None:
        from hitl.celery_app import app
        from hitl.model.registry import ModelRegistry
        from hitl.scenes import generate_scenes, upload_set

        bucket = self.settings.bucket
        self.set_params(MODEL_PARAMS)
        params_set = time.monotonic()
        self.seed = generate_scenes("train", DATASET_SEED, seed=0, source_prefix=f"s3://{bucket}/seed/")
        upload_set(self.seed[:SEED_V1], self.settings.s3_uri(self.settings.seed_manifest_key))
        test = generate_scenes("test", TEST_SCENES, seed=0, source_prefix=f"s3://{bucket}/test/")
        upload_set(test, self.settings.s3_uri(self.settings.test_manifest_key))
        registry = ModelRegistry(self.settings)
        app.send_task("hitl.train.check", kwargs={"force": True, "reason": "bench v1"}, queue="train")
        wait_for(lambda: registry.serving_version() is not None, 600, "v1 trained and serving", 1.0)
        self.v1 = registry.serving_version() or ""
        time.sleep(max(0.0, params_set + self.settings.params_cache_seconds + 1 - time.monotonic()))
        say(f"{self.v1} serving (trained on {SEED_V1} scenes)")

        scenes = [png for png, _ in generate_scenes("train", 3 * SCALING_IMAGES * MODEL_ROUNDS, seed=3)]
        out: dict[str, Any] = {
            "model_threads_per_process": 1, "version": self.v1, "params": MODEL_PARAMS, "rounds": MODEL_ROUNDS,
        }
        used = 0
        for processes in (1, 2):
            detector_runs, raw_runs = [], []
            for round_index in range(MODEL_ROUNDS):
                batch = scenes[used : used + SCALING_IMAGES * processes]
                used += len(batch)
                # Raw predict on the same images, then the detector on them; repeated, so that a drift of
                # the shared machine's speed falls on both sides alike.
                raw_runs.append(raw_predict_rate(processes, self.v1, batch))
                detector_runs.append(self.detector_run(processes, batch, f"m{processes}-{round_index}"))
                say(
                    f"{processes} process(es), round {round_index + 1}/{MODEL_ROUNDS}: detector "
                    f"{detector_runs[-1]['images_per_second']:.2f} images/s, raw predict "
                    f"{raw_runs[-1]['images_per_second']:.2f}/s"
                )
            counted = sum(r["counted_images"] for r in detector_runs)
            out[f"detector_{processes}_process"] = {
                "images": sum(r["images"] for r in detector_runs),
                "images_per_second": counted / sum(r["seconds"] for r in detector_runs),
                "warm_up_images": detector_runs[0]["warm_up_images"],
                "cpu_ms_per_image": {
                    name: sum(r["cpu_ms_per_image"][name] * r["counted_images"] for r in detector_runs) / counted
                    for name in detector_runs[0]["cpu_ms_per_image"]
                },
                "rounds": [{k: r[k] for k in ("images", "images_per_second")} for r in detector_runs],
            }
            raw_images, raw_seconds = sum(r["images"] for r in raw_runs), sum(r["seconds"] for r in raw_runs)
            decode_seconds = sum(r["decode_seconds_per_process"] for r in raw_runs)
            out[f"raw_predict_{processes}_process"] = {
                "processes": processes,
                "images": raw_images,
                "seconds": raw_seconds,
                "images_per_second": raw_images / raw_seconds,
                "decode_ms_per_image": decode_seconds * processes / raw_images * 1000,
                # Decode then predict, as a process holding only the model would run on image bytes.
                "with_decode_images_per_second": raw_images / (raw_seconds + decode_seconds),
                "rounds": raw_runs,
            }
        cores = os.cpu_count() or 1
        for processes in (1, 2):
            detected = out[f"detector_{processes}_process"]
            raw_rate = out[f"raw_predict_{processes}_process"]["images_per_second"]
            out[f"pipeline_over_raw_{processes}_process"] = detected["images_per_second"] / raw_rate
            out[f"pipeline_over_raw_with_decode_{processes}_process"] = (
                detected["images_per_second"] / out[f"raw_predict_{processes}_process"]["with_decode_images_per_second"]
            )
            # moto, the local stand-in for S3, runs on the detector's cores here (on AWS it does not):
            # the share of the machine it took bounds what was left for predict.
            moto_share = detected["cpu_ms_per_image"].get("moto", 0.0) / 1000 * detected["images_per_second"] / cores
            detected["moto_share_of_machine"] = moto_share
            if processes >= cores:
                out[f"pipeline_over_raw_{processes}_process_moto_excluded"] = detected["images_per_second"] / (
                    raw_rate * (1 - moto_share)
                )
        out["scaling_2_over_1"] = (
            out["detector_2_process"]["images_per_second"] / out["detector_1_process"]["images_per_second"]
        )
        self.result["model"] = out

    def detector_run(self, processes: int, batch: list[bytes], prefix: str) -> dict[str, Any]:
        """``batch`` queued with the detector stopped, then detected by ``processes`` worker processes
        (the embedded model, one thread each); the rate after each process's first image."""
        self.group.stop("detector")
        ids = self.submit([(f"{prefix}-{i}.png", d) for i, d in enumerate(batch)])
        seen: dict[str, float] = {}
        stop = threading.Event()
        watcher = self.watch_detected(ids, seen, stop, interval=0.05)
        self.restart_detector(
            HITL_DETECT_BACKEND="local", HITL_WORKER_CONCURRENCY=str(processes), HITL_MODEL_THREADS="1"
        )
        skip = 2 * processes  # each process loads the model with its first image
        wait_for(lambda: len(seen) > skip, 600, "the first detections")
        cpu_before, counted = self.cpu_seconds(CPU_WATCHED), len(seen)
        wait_for(lambda: len(seen) >= len(ids), 600, f"{processes}-process detection")
        cpu = cpu_delta(cpu_before, self.cpu_seconds(CPU_WATCHED), len(ids) - counted)
        stop.set()
        watcher.join()
        times = sorted(seen.values())
        return {
            "images": len(batch),
            "counted_images": len(times) - 1 - skip,
            "seconds": times[-1] - times[skip],
            "images_per_second": (len(times) - 1 - skip) / (times[-1] - times[skip]),
            "warm_up_images": skip,
            "cpu_ms_per_image": cpu,
        }

    # --- 2b/2c. answers and retraining ------------------------------------------------------------
    def learning(self) -> None:
        from hitl.domain.images import content_id
        from hitl.domain.records import NO_MODEL_VERSION
        from hitl.loops.dataset import LabelledDataset
        from hitl.model.registry import ModelRegistry
        from hitl.review.autoreview import answer_for, load_truth
        from hitl.review.portal_client import PortalClient, PortalHTTPError
        from hitl.scenes import generate_scene, generate_scenes, upload_set

        bucket = self.settings.bucket
        registry = ModelRegistry(self.settings)
        v1 = registry.serving_version()
        # The seed grows to 170 labelled scenes (an import): with the reviewers' labels, 200.
        seed = getattr(self, "seed", None) or generate_scenes(
            "train", DATASET_SEED, seed=0, source_prefix=f"s3://{bucket}/seed/"
        )
        upload_set(seed, self.settings.s3_uri(self.settings.seed_manifest_key))
        self.set_params(LEARNING_PARAMS)
        self.wait_params_applied()

        stream = []
        for png, line in generate_scenes("train", ANSWERS, seed=1, source_prefix="s3://placeholder/"):
            line["source-ref"] = f"s3://{bucket}/{self.settings.images_prefix}{content_id(png)}.png"
            stream.append((png, line))
        truth_file = RUN_DIR / "truth.jsonl"
        truth_file.write_text("".join(json.dumps(line) + "\n" for _, line in stream))
        truth = load_truth(truth_file)

        dataset = LabelledDataset(self.settings, client=self.redis)
        portal = PortalClient(self.stack_file.get("HITL_REVIEW_URL") or f"http://127.0.0.1:{self.settings.review_port}")
        passwords = json.loads(Path(self.stack_file["HITL_REVIEW_PASSWORD_FILE"]).read_text())
        portal.sign_in("alice", passwords["alice"])
        answered: dict[str, float] = {}
        labelled: dict[str, float] = {}
        stop = threading.Event()
        rng = random.Random(0)

        def reviewer() -> None:
            while len(answered) < ANSWERS and not stop.is_set():
                tasks = [t for t in portal.queue() if str(t.get("taskObject")) in truth and t["name"] not in answered]
                if not tasks:
                    time.sleep(0.25)  # each listing reads every open loop: not too often
                    continue
                for summary in tasks:
                    try:
                        task = portal.open_task(summary["name"])
                        size = portal.image_size(task)
                        known = truth[str(summary["taskObject"])]
                        portal.submit(summary["name"], answer_for(task, known, size, False, rng))
                    except PortalHTTPError as error:
                        say(f"answer to {summary['name']} refused: {error}")
                        continue
                    answered[summary["name"]] = time.perf_counter()

        def label_watcher() -> None:
            while len(labelled) < ANSWERS and not stop.is_set():
                names = [n for n in list(answered) if n not in labelled]
                if names:
                    pipe = self.redis.pipeline(transaction=False)
                    for name in names:
                        pipe.sismember(dataset.examples_key, dataset.line_key(name))
                    now = time.perf_counter()
                    for name, member in zip(names, pipe.execute(), strict=True):
                        if member:
                            labelled[name] = now
                time.sleep(POLL)

        promoted_at: list[float] = []
        serving_at: list[float] = []
        probe_log: list[dict[str, Any]] = []

        def prober() -> None:
            """One new image a second: the first detected by a version other than v1 marks serving."""
            for index in range(PROBES):
                if stop.is_set() or serving_at:
                    return
                png = generate_scene("train", index, seed=2).png()
                sent = time.perf_counter()
                image_id = self.client.submit_bytes(png, f"probe{index}.png", "bench").image_id or ""
                if not promoted_at and registry.serving_version() not in (None, v1):
                    promoted_at.append(time.perf_counter())
                key = self.settings.key("image", image_id)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and self.redis.hget(key, "state") != "detected":
                    time.sleep(POLL)
                version = self.redis.hget(key, "model_version")
                probe_log.append({"sent": sent, "detected": time.perf_counter(), "version": version})
                if version not in (None, v1, NO_MODEL_VERSION):
                    serving_at.append(time.perf_counter())
                    return
                time.sleep(max(0.0, sent + 1.0 - time.perf_counter()))

        threads = [threading.Thread(target=f, daemon=True) for f in (reviewer, label_watcher)]
        for thread in threads:
            thread.start()
        cpu_before = self.cpu_seconds(("dispatcher", "ingestor", "review"))
        started = time.perf_counter()
        for index, (png, _) in enumerate(stream):
            self.client.submit_bytes(png, f"answer{index}.png", "bench")
            time.sleep(0.5)
        wait_for(lambda: len(labelled) >= ANSWERS, 600, "answers become labels", 0.2)
        # Each image got one loop and one answer: per loop and per label (idle polling included).
        loop_cpu = cpu_delta(cpu_before, self.cpu_seconds(("dispatcher", "ingestor", "review")), ANSWERS)
        probe = threading.Thread(target=prober, daemon=True)
        probe.start()
        probe.join(timeout=600)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        order = sorted(labelled, key=labelled.__getitem__)
        threshold_name = order[ANSWERS - 1]
        answer_latencies = [labelled[n] - answered[n] for n in order]
        t0 = answered[threshold_name]
        out: dict[str, Any] = {
            "answers": len(answered),
            "answer_to_label_s": percentiles(answer_latencies),
            "answer_to_label_samples_s": [round(x, 4) for x in answer_latencies],
            "dataset_images": DATASET_SEED + ANSWERS,
            "previous_version": v1,
            "new_version": registry.serving_version(),
            "threshold_answer_to_label_s": labelled[threshold_name] - t0,
            "threshold_to_promoted_s": (promoted_at[0] - t0) if promoted_at else None,
            "threshold_to_serving_s": (serving_at[0] - t0) if serving_at else None,
            "cpu_ms_per_loop_and_label": loop_cpu,
            "probe_interval_s": 1.0,
            "probes": len(probe_log),
            "phase_seconds": time.perf_counter() - started,
        }
        if out["new_version"]:
            meta = registry.describe(out["new_version"])
            out["new_version_f1"] = meta.f1
            out["new_version_train_images"] = getattr(meta, "train_images", None)
        if v1:
            out["previous_version_f1"] = registry.describe(v1).f1
        say(f"answer → label p99 {out['answer_to_label_s']['p99']:.2f}s; threshold → serving "
            f"{out['threshold_to_serving_s']}")
        self.result["learning"] = out


def process_tree(main: int) -> list[int]:
    """``main`` and its direct children (a Celery worker's pool processes)."""
    pids = [main]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == main:
            pids.append(int(stat.parent.name))
    return pids


def cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime, the 14th and 15th fields of stat (11th and 12th after the command).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_delta(before: dict[str, float], after: dict[str, float], per: float) -> dict[str, float]:
    return {name: (after[name] - before[name]) / per * 1000 for name in before}


def combine_rounds(runs: list[dict[str, Any]], rate_key: str) -> dict[str, Any]:
    """Rounds of one side of the overhead comparison → its totals: the rate over all rounds' images and
    seconds, CPU per image weighted by images."""
    count_key = "images" if "images" in runs[0] else "tasks"
    count = sum(r[count_key] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    names = runs[0]["cpu_ms_per_image"].keys()
    return {
        count_key: count,
        "seconds": seconds,
        "submit_seconds": sum(r["submit_seconds"] for r in runs),
        rate_key: count / seconds,
        "cpu_ms_per_image": {n: sum(r["cpu_ms_per_image"][n] * r[count_key] for r in runs) / count for n in names},
        "rounds": [{k: r[k] for k in (count_key, "seconds", rate_key)} for r in runs],
    }


def raw_predict_rate(processes: int, version: str, pngs: list[bytes]) -> dict[str, float]:
    """``predict`` alone, in ``processes`` fresh processes at once (one model thread each), each on its
    share of ``pngs`` decoded as the detector would see them; images/s over the span all of them ran."""
    context = multiprocessing.get_context("spawn")
    manager = context.Manager()
    barrier = manager.Barrier(processes)
    results = manager.list()
    workers = [
        context.Process(target=_raw_worker, args=(version, pngs[k::processes], barrier, results))
        for k in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=600)
    spans = list(results)
    manager.shutdown()
    count = sum(n for n, _, _, _ in spans)
    wall = max(end for _, _, end, _ in spans) - min(begin for _, begin, _, _ in spans)
    decode_seconds = sum(d for _, _, _, d in spans)
    return {
        "processes": processes,
        "images": count,
        "seconds": wall,
        "images_per_second": count / wall,
        # The PNG decode the detector does before predict, timed apart (each process decodes its share).
        "decode_ms_per_image": decode_seconds / count * 1000,
        "decode_seconds_per_process": decode_seconds / processes,
    }


def _raw_worker(version: str, pngs: list[bytes], barrier: Any, results: Any) -> None:
    from hitl.domain.images import decode
    from hitl.model.backbone import set_shared_threads
    from hitl.model.registry import ModelRegistry
    from hitl.settings import get_settings

    settings = get_settings()
    set_shared_threads(1)
    predictor = ModelRegistry(settings).load(version)
    started = time.perf_counter()
    decoded = [decode(png, settings.image_limits()).pixels for png in pngs]
    decode_seconds = time.perf_counter() - started
    predictor.predict(decoded[0])  # the first call sets up the session's buffers
    barrier.wait()
    begin = time.perf_counter()
    for pixels in decoded:
        predictor.predict(pixels)
    results.append((len(decoded), begin, time.perf_counter(), decode_seconds))


def summarise_profile(files: list[Path], top: int = 25) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks → the share of samples each function is on the stack of (inclusive)
    and at the top of (self), over every sampled process."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack:
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + count
            own[frames[-1]] = own.get(frames[-1], 0) + count

    def ranked(table: dict[str, int]) -> list[dict[str, Any]]:
        # Frames on (nearly) every stack are the worker's own scaffolding: left out.
        rows = sorted(((k, n) for k, n in table.items() if n < 0.98 * total), key=lambda kv: kv[1], reverse=True)
        return [{"function": name, "share": round(n / total, 4)} for name, n in rows[:top]]

    categories = dict.fromkeys(PROFILE_CATEGORIES, 0)
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            for name, needle in PROFILE_CATEGORIES.items():
                if needle in stack:
                    categories[name] += int(count_text)
    return {
        "samples": total,
        "categories": {name: round(n / total, 4) for name, n in categories.items()} if total else {},
        "inclusive": ranked(inclusive),
        "self": ranked(own),
    }


# Share of the detector's samples (wall time of its task processes) spent under each.
PROFILE_CATEGORIES = {
    "the detect task": "detect (services/detector/tasks.py",
    "Redis round trips": "redis/client.py",
    "S3 calls (botocore)": "botocore/endpoint.py",
    "logging (structlog)": "structlog/",
    "metrics (prometheus_client)": "prometheus_client/",
    "record model (pydantic)": "pydantic/",
    "image decode (PIL)": "PIL/",
}


# --- results -------------------------------------------------------------------------------------


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's comparable keys (seconds unless named otherwise)."""
    overhead, latency = result.get("overhead", {}), result.get("latency", {})
    backlog, model, learning = result.get("backlog", {}), result.get("model", {}), result.get("learning", {})

    def p99(level: str) -> float | None:
        return latency.get(level, {}).get("submit_to_record_s", {}).get("p99")

    return {
        "overhead_ratio_same_io": overhead.get("ratio"),
        "model_pipeline_ratio_raw": model.get("pipeline_over_raw_2_process"),
        "model_pipeline_ratio_raw_moto_excluded": model.get("pipeline_over_raw_2_process_moto_excluded"),
        "model_pipeline_ratio_raw_with_decode": model.get("pipeline_over_raw_with_decode_2_process"),
        "detector_scaling_2_over_1": model.get("scaling_2_over_1"),
        "submit_to_record_p99_s_at_50pct": p99("50pct"),
        "submit_to_record_p99_s_at_90pct": p99("90pct"),
        "answer_to_label_p99_s": learning.get("answer_to_label_s", {}).get("p99"),
        "threshold_to_serving_s": learning.get("threshold_to_serving_s"),
        "redis_kb_per_queued_task": backlog.get("redis_kb_per_queued_task"),
        "redis_kb_per_indexed_image": backlog.get("redis_kb_per_indexed_image"),
        "worker_rss_growth_ratio": backlog.get("worker_rss_growth_ratio"),
        "backlog_tasks": backlog.get("tasks"),
        "backlog_lost": backlog.get("lost"),
    }


# --- the capacity model (docs/capacity.md) ----------------------------------------------------------
LOADS = (10, 100, 1000)  # images/s
HEADROOM = 0.7  # pods sized to run at 70 % of their measured throughput
REVIEW_SHARE = 0.10  # assumed share of images routed to review (low confidence + audit)
BACKLOG_MINUTES = 10  # Redis sized to hold this much of a stalled detector's backlog
QUEUE_SECONDS_PER_REPLICA = 10  # KEDA target: each replica's share of the list is this many seconds of work


def capacity(result: dict[str, Any], retention_days: float) -> dict[str, Any]:
    """Pods and Redis per load from this run's per-process figures; what AWS documents is applied in
    docs/capacity.md (inference units, endpoint instances, A2I and SQS quotas), as it is not measured here."""
    import math

    overhead, model, backlog, learning = (result.get(k) for k in ("overhead", "model", "backlog", "learning"))
    if not (overhead and model and backlog and learning):
        return {}
    embedded_rate = model["detector_1_process"]["images_per_second"]  # one process, one model thread
    detector_cpu_ms = overhead["pipeline"]["cpu_ms_per_image"]["detector"]  # everything but inference
    loop_cpu = learning["cpu_ms_per_loop_and_label"]
    rows = []
    for load in LOADS:
        loops = load * REVIEW_SHARE
        embedded_pods = math.ceil(load / (embedded_rate * HEADROOM))
        managed_cores = load * detector_cpu_ms / 1000 / HEADROOM
        rows.append({
            "images_per_second": load,
            "detector_pods_embedded_1cpu": embedded_pods,
            "detector_cores_managed_backend": round(managed_cores, 2),
            "detector_pods_managed_backend_1cpu": max(1, math.ceil(managed_cores)),
            "loops_per_second": loops,
            "dispatcher_cores": round(loops * loop_cpu["dispatcher"] / 1000 / HEADROOM, 3),
            "ingestor_cores": round(loops * loop_cpu["ingestor"] / 1000 / HEADROOM, 3),
            "redis_gb_backlog": round(load * BACKLOG_MINUTES * 60 * backlog["redis_kb_per_queued_image"] / 1024**2, 3),
            "redis_gb_index": round(load * retention_days * 86400 * backlog["redis_kb_per_indexed_image"] / 1024**2, 1),
            "redis_gb_index_per_day_kept": round(load * 86400 * backlog["redis_kb_per_indexed_image"] / 1024**2, 2),
            "keda_detect_list_length_embedded": max(1, round(embedded_rate * QUEUE_SECONDS_PER_REPLICA)),
        })
    return {
        "inputs": {
            "embedded_images_per_second_per_process": embedded_rate,
            "detector_cpu_ms_per_image_without_inference": detector_cpu_ms,
            "dispatcher_cpu_ms_per_loop": loop_cpu["dispatcher"],
            "ingestor_cpu_ms_per_label": loop_cpu["ingestor"],
            "redis_kb_per_queued_image": backlog["redis_kb_per_queued_image"],
            "redis_kb_per_indexed_image": backlog["redis_kb_per_indexed_image"],
            "retention_days": retention_days,
        },
        "assumptions": {
            "headroom": HEADROOM,
            "review_share": REVIEW_SHARE,
            "backlog_minutes": BACKLOG_MINUTES,
            "queue_seconds_per_replica": QUEUE_SECONDS_PER_REPLICA,
        },
        "loads": rows,
    }


TARGETS = {
    "overhead_ratio_same_io": (">=", 0.90),
    "model_pipeline_ratio_raw": (">=", 0.75),
    "detector_scaling_2_over_1": (">=", 1.6),
    "answer_to_label_p99_s": ("<=", 2.0),
    "threshold_to_serving_s": ("<=", 90.0),
    "redis_kb_per_queued_task": ("<=", 1.0),
    "redis_kb_per_indexed_image": ("<=", 2.0),
    "worker_rss_growth_ratio": ("<=", 0.10),
    "backlog_lost": ("<=", 0),
}


def verdicts(head: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, (op, target) in TARGETS.items():
        value = head.get(key)
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out[key] = {"target": f"{op} {target}", "value": value, "met": met}
    return out


def plot(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    overhead = result.get("overhead")
    ax = axes[0][0]
    if overhead:
        names = ["pipeline", "same-I/O\nbare task", "moto S3-only\nceiling"]
        values = [
            overhead["pipeline"]["routed_images_per_second"],
            overhead["same_io_bare_task"]["tasks_per_second"],
            overhead["moto_s3"]["s3_only_ceiling_images_per_second"],
        ]
        ax.bar(names, values, color=["tab:blue", "tab:grey", "tab:orange"])
        ax.set_title(f"Overhead: pipeline ÷ same-I/O = {overhead['ratio']:.2f}")
        ax.set_ylabel("images/s (2 worker processes)")
    model = result.get("model")
    ax = axes[0][1]
    if model:
        x = np.arange(2)
        raw = [model[f"raw_predict_{p}_process"]["images_per_second"] for p in (1, 2)]
        det = [model[f"detector_{p}_process"]["images_per_second"] for p in (1, 2)]
        ax.bar(x - 0.2, raw, 0.4, label="raw predict", color="tab:grey")
        ax.bar(x + 0.2, det, 0.4, label="pipeline (detector)", color="tab:blue")
        ax.set_xticks(x, ["1 process", "2 processes"])
        ax.set_ylabel("images/s (640×480, embedded model)")
        ax.set_title(f"Embedded model: 2 ÷ 1 = {model['scaling_2_over_1']:.2f}")
        ax.legend()
    latency = result.get("latency")
    ax = axes[0][2]
    if latency:
        for level, colour in (("50pct", "tab:green"), ("90pct", "tab:red")):
            samples = np.asarray(latency[level]["samples_s"]) * 1000
            ax.hist(samples, bins=40, alpha=0.6, color=colour,
                    label=f"{level[:2]} % ({latency[level]['rate_images_per_second']:.0f}/s)")
        ax.set_xlabel("submit → record in S3 (ms)")
        ax.set_ylabel("images")
        ax.set_title("Latency under load")
        ax.legend()
    learning = result.get("learning")
    ax = axes[1][0]
    if learning:
        ax.hist(np.asarray(learning["answer_to_label_samples_s"]) * 1000, bins=20, color="tab:purple")
        ax.set_xlabel("portal answer returned → labelled example in S3 (ms)")
        ax.set_ylabel("answers")
        ax.set_title(f"Answer → label, p99 {learning['answer_to_label_s']['p99']:.2f} s")
    ax = axes[1][1]
    if learning and learning.get("threshold_to_serving_s") is not None:
        steps = [
            ("label in S3", learning["threshold_answer_to_label_s"]),
            ("promoted", learning.get("threshold_to_promoted_s") or 0.0),
            ("serving", learning["threshold_to_serving_s"]),
        ]
        ax.barh([s for s, _ in steps], [v for _, v in steps], color=["tab:purple", "tab:orange", "tab:green"])
        ax.set_xlabel("seconds after the threshold answer")
        ax.set_title(f"Threshold → serving ({learning['dataset_images']} images): "
                     f"{learning['threshold_to_serving_s']:.0f} s")
    backlog = result.get("backlog")
    ax = axes[1][2]
    if backlog:
        t = [s["t"] for s in backlog["samples"]]
        ax.plot(t, [s["rss_mb"] for s in backlog["samples"]], color="tab:blue", label="detector RSS (MB)")
        ax.set_xlabel("seconds into the drain")
        ax.set_ylabel("RSS (MB)")
        ax.set_ylim(0, 1.2 * max(s["rss_mb"] for s in backlog["samples"]))
        ax2 = ax.twinx()
        ax2.plot(t, [s["queued"] for s in backlog["samples"]], color="tab:grey", label="queued tasks")
        ax2.set_ylabel("queued tasks")
        ax.set_title(f"Backlog of {backlog['tasks']}: RSS growth {backlog['worker_rss_growth_ratio']:+.1%}")
        ax.legend(loc="upper center")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)


def main() -> None:
    from hitl.entry import parse_args

    parse_args("python bench/bench_performance.py")
    from hitl.stack.local import STOP_ORDER
    from hitl.stack.procs import ProcessGroup

    env = stack_env()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    # Stopped without `stack down`'s snapshot of moto (tens of thousands of objects): every run starts
    # from `stack reset`.
    group = ProcessGroup(RUN_DIR)
    group.stop_all(order=STOP_ORDER)
    subprocess.run([HITL, "stack", "reset", "--yes"], env=env, check=True, capture_output=True)
    bench: Bench | None = None
    try:
        say("starting the local stack")
        up = subprocess.run([HITL, "stack", "up"], env=env, check=False, capture_output=True, text=True)
        if up.returncode:
            raise SystemExit(f"hitl stack up failed ({up.returncode}):\n{up.stdout[-2000:]}\n{up.stderr[-2000:]}")
        bench = Bench(env)
        bench.set_params(THROUGHPUT_PARAMS)
        bench.wait_params_applied()
        for phase in PHASES:
            say(f"phase {phase}")
            getattr(bench, phase)()
    finally:
        group.stop_all(order=STOP_ORDER)
        say("stack stopped")
    if bench is None:
        raise SystemExit("the stack did not start")
    result = bench.result
    if os.environ.get("BENCH_PYSPY") or os.environ.get("BENCH_PROFILE_LABEL"):
        label = os.environ.get("BENCH_PROFILE_LABEL", "profile")
        previous = json.loads(PROFILE.read_text()) if PROFILE.exists() else {}
        previous[label] = {
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sampled_by_py_spy": bool(os.environ.get("BENCH_PYSPY")),
            "overhead": dict(result.get("overhead", {})),
            "profile": result.get("profile"),
        }
        PROFILE.write_text(json.dumps(previous, indent=2) + "\n")
        say(f"written {PROFILE} ({label})")
        return
    head = headline(result)
    out = {
        **head,
        "targets": verdicts(head),
        "definitions": {
            "redis_kb_per_queued_task": "INFO used_memory with the detect list of queued Celery messages minus "
            "without it (set aside with DUMP/DEL, put back with RESTORE), per message; "
            "backlog.redis_kb_per_queued_image adds the image's index entry in state queued",
            "redis_kb_per_indexed_image": "INFO used_memory delta per image after the drain, against before the "
            "submission (index hash, the images sorted set, the audit counter's entry)",
            "worker_rss_growth_ratio": "(RSS after the drain - RSS after the first 200 tasks) / the latter; "
            "RSS summed over the detector's Celery main process and its children",
            "submit_to_record": "from the image's scheduled submission slot (open loop) to the index saying "
            "detected, which is written after the record's S3 put; polled every 10 ms",
            "answer_to_label": "from the portal's answer call returning to the labelled example's key in the "
            "dataset's Redis set, added after its S3 put; polled every 10 ms",
            "threshold_to_serving": "from the answer call whose label reaches Minimum-Untrained-Images to the "
            "first probe image (one a second) detected by the new version",
        },
        **result,
        "capacity": capacity(result, bench.settings.retention_days),
        "phases": PHASES,
        "seconds": round(time.monotonic() - STARTED, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_at_end": list(os.getloadavg())},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if set(PHASES) == {"overhead", "latency", "backlog", "model", "learning"}:
        RESULTS.write_text(json.dumps(out, indent=2) + "\n")
        plot(result)
        say(f"written {RESULTS} and {PLOT}")
    else:
        partial = RUN_DIR / "performance-partial.json"
        partial.write_text(json.dumps(out, indent=2) + "\n")
        say(f"partial run: written {partial}")
    print(json.dumps({**head, "seconds": out["seconds"]}, indent=2))


if __name__ == "__main__":
    main()
