"""One chaos run: a private Redis with AOF, the local stack on it, load through the three entry points,
simulated reviewers, seeded faults, convergence, the invariants, ``chaos.json`` and ``chaos.png``.

``python -m tests.chaos --scale smoke|full`` (``make chaos`` runs the full one). The seed is fixed
(``HITL_CHAOS_SEED`` overrides it) and reported.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_lib

from hitl.stack import procs
from tests.chaos import faults as chaos_faults
from tests.chaos import invariants, load
from tests.chaos.config import Scale

ROOT = Path(__file__).resolve().parents[2]
POISON_LOOP = "chaos-poison-loop"
SERVICES_CHECKED = (
    "detector",
    "dispatcher",
    "ingestor",
    "reconciler",
    "trainer",
    "intake",
    "monitor",
    "beat",
    "review",
)


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- a private redis-server with AOF -----------------------------------------------------------------
@contextmanager
def private_redis(run_dir: Path) -> Iterator[tuple[procs.ProcessGroup, int]]:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("redis-server is not installed (deploy/apt-packages lists it)")
    group = procs.ProcessGroup(run_dir / "redis")
    port = procs.free_port()
    data = run_dir / "redis" / "data"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        server,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(data),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--protected-mode",
        "yes",
    ]
    group.start("redis", argv)
    procs.wait_until(lambda: redis_lib.Redis(port=port).ping(), 15, "redis-server")
    try:
        yield group, port
    finally:
        group.stop_all()


# --- what the fault injector and the sampler read -----------------------------------------------------
@dataclass
class Clients:
    env: dict[str, str]
    redis_url: str
    key_prefix: str
    events_queue_url: str
    flow_arn: str
    accepted: load.Accepted
    answered: set[str] = field(default_factory=set)
    poison_loop: str = POISON_LOOP

    def __post_init__(self) -> None:
        from celery import Celery

        self.celery = Celery(broker=self.redis_url)
        self.redis = redis_lib.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=10)

    def _boto(self, service: str) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.env.get(f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}")
            or self.env["AWS_ENDPOINT_URL"],
            region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def a2i(self) -> Any:
        return self._boto("sagemaker-a2i-runtime")

    def sqs(self) -> Any:
        return self._boto("sqs")

    def s3(self) -> Any:
        return self._boto("s3")

    def states(self) -> dict[str, dict[str, str]]:
        with self.accepted.lock:
            ids = list(self.accepted.ids)
        pipe = self.redis.pipeline()
        for image_id in ids:
            pipe.hgetall(f"{self.key_prefix}:image:{image_id}")
        return dict(zip(ids, pipe.execute(), strict=True))

    def routed_detections(self) -> list[tuple[str, str, str]]:
        return sorted(
            (i, s["detection_id"], s.get("loop_status", ""))
            for i, s in self.states().items()
            if s.get("detection_id") and s.get("route") not in (None, "", "none")
        )

    def completed_loops(self) -> list[str]:
        return sorted(self.answered)


# --- simulated reviewers ------------------------------------------------------------------------------
class Reviewers:
    """Reviewers answering every task from the truth file, through the portal's HTTP API; they sign in
    again and carry on whenever the review service is down or restarted."""

    def __init__(self, url: str, passwords: dict[str, str], truth_path: Path, names: tuple[str, ...]) -> None:
        from hitl.review import autoreview

        self.url = url
        self.passwords = passwords
        self.truth = autoreview.load_truth(truth_path)
        self.names = names
        self.answered: set[str] = set()
        self.errors = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in names]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _run(self, name: str) -> None:
        from hitl.review import autoreview
        from hitl.review.portal_client import PortalClient

        reviewers = self

        class Recording(PortalClient):
            """Counts an answer as given once it is sent: a reply lost to a restart may still have
            been recorded by the service."""

            def submit(self, loop: str, answer: dict[str, Any]) -> None:
                with reviewers.lock:
                    reviewers.answered.add(loop)
                super().submit(loop, answer)

        while not self.stop.is_set():
            try:
                client = Recording(self.url, timeout=20)
                client.sign_in(name, self.passwords[name])
                while not self.stop.is_set():
                    autoreview.run(client, self.truth, until_idle=1.0, poll=0.5)
                    self.stop.wait(0.5)
            except Exception:
                with self.lock:
                    self.errors += 1
                self.stop.wait(1.0)


# --- the timeline -------------------------------------------------------------------------------------
class Sampler:
    def __init__(self, clients: Clients, reviewers: Reviewers, dataset_key: str) -> None:
        self.clients = clients
        self.reviewers = reviewers
        self.dataset_key = dataset_key
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(3.0):
            sample: dict[str, float] = {"t": time.time(), "accepted": len(self.clients.accepted.ids)}
            with suppress(Exception):  # Redis may be down right now
                states = self.clients.states()
                sample["detected"] = sum(s.get("state") == "detected" for s in states.values())
                sample["loops_completed"] = sum(s.get("loop_status") == "Completed" for s in states.values())
                sample["dataset_lines"] = self.clients.redis.scard(self.dataset_key)
            sample["answered"] = len(self.reviewers.answered)
            self.samples.append(sample)


# --- the run ----------------------------------------------------------------------------------------
def stack_env(run_dir: Path, redis_url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))}
    return {
        **base,
        "HITL_RUN_DIR": str(run_dir),
        "HITL_REDIS_URL": redis_url,
        "HITL_KEY_PREFIX": "chaos",
        "HITL_BUCKET": "hitl-chaos",
        "HITL_DETECT_BACKEND": "fixed",
        "HITL_WORKER_CONCURRENCY": "2",
        "HITL_PARAMS_CACHE_SECONDS": "1",
        "HITL_LOOP_LABELS": json.dumps([load.LABEL]),
        "HITL_LOG_LEVEL": "INFO",
        "HITL_STACK_MOTO_PORT": str(procs.free_port()),
        "HITL_REVIEW_PORT": str(procs.free_port()),
        "HITL_STACK_METRICS_BASE_PORT": str(_free_port_range(10)),
        # The run kills and restarts services itself, on its own timers, and applies (and reports) the
        # restart policy for unplanned exits: the stack's own supervisor would restart its victims early.
        "HITL_STACK_SUPERVISE": "false",
        # Faster recovery than production's defaults, so a run converges in minutes: a killed task
        # comes back after 75 s instead of an hour; poison events reach the DLQ after 3 short receives.
        "HITL_VISIBILITY_TIMEOUT": "75",
        "HITL_TASK_TIME_LIMIT": "60",
        "HITL_TASK_SOFT_TIME_LIMIT": "50",
        "HITL_INGEST_VISIBILITY_SECONDS": "8",
        "HITL_INGEST_WAIT_SECONDS": "2",
        "HITL_INTAKE_WAIT_SECONDS": "2",
        "HITL_SQS_MAX_RECEIVE_COUNT": "3",
        "HITL_RECONCILE_INTERVAL_SECONDS": "30",
        "HITL_RECONCILE_MIN_AGE_SECONDS": "20",
        "HITL_DISPATCH_BACKOFF_MAX": "4",
        # Retries back off below the visibility timeout; stranded work is picked up after 30 s.
        "HITL_TASK_RETRY_BACKOFF_INITIAL": "1",
        "HITL_TASK_RETRY_BACKOFF_MAX": "15",
        "HITL_DISPATCH_PENDING_SECONDS": "30",
        "HITL_REQUEUE_STALE_AFTER_SECONDS": "30",
        "PYTHONPATH": str(ROOT),
    }


def _free_port_range(count: int) -> int:
    return procs.free_port_range(count)


def _services() -> list[Any]:
    from hitl.stack.local import Service, pipeline_services

    return [
        Service("detector", "tests.chaos.poison_detector") if service.name == "detector" else service
        for service in pipeline_services()
    ]


def _use_env(env: dict[str, str]) -> None:
    from hitl import aws
    from hitl.settings import get_settings

    os.environ.clear()
    os.environ.update(env)
    get_settings.cache_clear()
    aws.reset_clients()


class ChaosRun:
    def __init__(self, scale: Scale, seed: int, out_dir: Path, run_dir: Path | None = None) -> None:
        self.scale = scale
        self.seed = seed
        self.out_dir = out_dir
        self.keep_run_dir = run_dir is not None
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="hitl-chaos-"))
        self.timeline: dict[str, float] = {}

    def run(self) -> dict[str, Any]:
        os.chdir(ROOT)
        self.load_at_start = [round(x, 1) for x in os.getloadavg()]
        started = time.time()
        self.timeline["started"] = started
        with private_redis(self.run_dir) as (redis_group, redis_port):
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
            env = stack_env(self.run_dir, redis_url)
            _use_env(env)
            from hitl.settings import get_settings
            from hitl.stack import local

            say(f"seed {self.seed}, scale {self.scale.name}: starting the local stack in {self.run_dir}")
            stack = local.up(get_settings(), self.run_dir, _services())
            try:
                local.wait_ready(stack, [s.name for s in _services()], timeout=120)
                env = {**env, **local.read_env_file(stack.env_file)}
                _use_env(env)
                result = self._run_on(stack, env, redis_group, redis_port)
            finally:
                say("stopping the stack")
                local.down(self.run_dir)
        result["run_seconds"] = round(time.time() - started, 1)
        if not self.keep_run_dir and not result["broken"]:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            result["run_dir"] = str(self.run_dir)
        return result

    def _run_on(
        self, stack: Any, env: dict[str, str], redis_group: procs.ProcessGroup, redis_port: int
    ) -> dict[str, Any]:
        from hitl.params import ParameterStore
        from hitl.settings import get_settings

        settings = get_settings()
        params = ParameterStore(settings)
        params.set("Minimum-Label-Detection-Confidence", str(self.scale.min_confidence))
        params.set("Human-Sampling-Interval", str(self.scale.sampling_interval))
        params.set("Enable-Automatic-Training", "false")

        items = load.plan(self.seed, self.scale.images, self.scale.poison_images)
        truth_path = self.run_dir / "truth.jsonl"
        with truth_path.open("w") as out:
            for item in items:
                refs = [settings.s3_uri(f"{settings.images_prefix}{item.image_id}.png")]
                refs.append(settings.s3_uri(f"{settings.uploads_prefix}chaos/{item.name}"))
                for ref in refs:
                    out.write(json.dumps(load.truth_line(ref)) + "\n")
            out.write(json.dumps(load.truth_line(settings.s3_uri("chaos/poison-loop.png"))) + "\n")

        passwords = json.loads(Path(env["HITL_REVIEW_PASSWORD_FILE"]).read_text())
        submitters = load.Submitters(items, env, settings.bucket, self.run_dir / "cli", self.scale.cli_batch)
        clients = Clients(
            env=env,
            redis_url=settings.redis_url,
            key_prefix=settings.key_prefix,
            events_queue_url=stack.urls["EVENTS_QUEUE"],
            flow_arn=env["HITL_FLOW_DEFINITION_ARN"],
            accepted=submitters.accepted,
        )
        self._poison_loop(stack, clients, settings.bucket, passwords)

        reviewers = Reviewers(env["HITL_REVIEW_URL"], passwords, truth_path, ("bob", "carol"))
        clients.answered = reviewers.answered
        sampler = Sampler(clients, reviewers, settings.key("dataset", settings.labeled_dataset, "examples"))
        plan = chaos_faults.make_plan(self.scale, self.seed)
        fault_seconds = sum(p.gap for p in plan)
        injector = chaos_faults.Injector(
            plan, stack.group, redis_group, redis_port, clients, self.run_dir / "faults.jsonl"
        )
        say(f"{len(items)} images over {fault_seconds:.0f}s; {len(plan)} faults planned")
        self.timeline["load_started"] = time.time()
        reviewers.start()
        sampler.thread.start()
        submitters.start(fault_seconds * 0.75)
        injector.start_supervisor(list(SERVICES_CHECKED))
        injector.start()
        injector.wait(fault_seconds + 600)
        self.timeline["faults_ended"] = time.time()
        say(f"faults over ({len(injector.faults)}); waiting for the submitters")
        submitters.join(600)
        self.timeline["load_ended"] = time.time()
        say(f"accepted {len(submitters.accepted.ids)} images ({submitters.accepted.retries} retried submissions)")

        converged = self._converge(clients, reviewers, redis_port)
        self.timeline["converged"] = time.time()
        sampler.stop.set()
        reviewers.join()
        injector.stop_supervisor()

        say("checking the invariants")
        alive = self._services_alive(stack)
        actual = invariants.read_actual(
            clients.s3(),
            clients.a2i(),
            clients.sqs(),
            clients.redis,
            bucket=settings.bucket,
            key_prefix=settings.key_prefix,
            flow_arn=clients.flow_arn,
            image_ids=sorted(submitters.accepted.ids),
            dlq_urls={
                "events": clients.sqs().get_queue_url(QueueName=settings.events_queue + settings.dlq_suffix)[
                    "QueueUrl"
                ],
                "uploads": clients.sqs().get_queue_url(QueueName=settings.uploads_queue + settings.dlq_suffix)[
                    "QueueUrl"
                ],
            },
        )
        expected = invariants.Expected(
            accepted=dict(submitters.accepted.ids),
            poison_images={i.image_id for i in items if i.poison},
            poison_loop=POISON_LOOP,
            answered=set(reviewers.answered),
            sampling_interval=self.scale.sampling_interval,
            min_confidence=self.scale.min_confidence,
        )
        verdict = invariants.judge(expected, actual)
        memory_bound = 64 * 1024 * 1024
        if actual.redis_memory > memory_bound:
            verdict["broken"].append(f"Redis uses {actual.redis_memory} bytes, above {memory_bound}")
        dead = [name for name, ok in alive.items() if not ok]
        if dead:
            verdict["broken"].append(f"services not alive after the run: {dead}")
        if not converged:
            verdict["broken"].append("did not converge before the timeout")
        if len(submitters.accepted.ids) != len(items):
            verdict["broken"].append(f"only {len(submitters.accepted.ids)} of {len(items)} images were accepted")
        by_kind: dict[str, int] = {}
        for fault in injector.faults:
            by_kind[fault.kind] = by_kind.get(fault.kind, 0) + 1
        failed_faults = [f"{f.kind}: {f.error}" for f in injector.faults if f.error]
        return {
            **{k: verdict[k] for k in ("images", "records", "loops", "dataset_lines")},
            **{
                k: verdict[k]
                for k in ("lost", "duplicate_records", "duplicate_loops", "duplicate_lines", "missing_lines")
            },
            "faults": len(injector.faults),
            "faults_by_kind": dict(sorted(by_kind.items())),
            "converge_seconds": round(self.timeline["converged"] - self.timeline["faults_ended"], 1)
            if converged
            else None,
            "seed": self.seed,
            "scale": self.scale.name,
            "converged": converged,
            "invariants_hold": not verdict["broken"],
            **{k: v for k, v in verdict.items() if k not in ("images", "records", "loops", "dataset_lines")},
            "poison_images": len(expected.poison_images),
            "poison_loop": POISON_LOOP,
            "entry_points": {e: sum(v == e for v in submitters.accepted.ids.values()) for e in load.ENTRY_POINTS},
            "submission_retries": submitters.accepted.retries,
            "submission_errors": submitters.accepted.errors[:10],
            "reviewer_reconnects": reviewers.errors,
            "services_alive": alive,
            "unexpected_exits": [
                {k: (round(v - self.timeline["load_started"], 1) if k == "at" else v) for k, v in e.items()}
                for e in injector.exits
            ],
            "fault_errors": failed_faults,
            "faults_log": [
                {
                    "kind": f.kind,
                    "target": f.target,
                    "started": round(f.started - self.timeline["load_started"], 1),
                    "ended": round((f.ended or f.started) - self.timeline["load_started"], 1),
                    "detail": f.detail,
                }
                for f in injector.faults
            ],
            "timeline": {k: round(v - self.timeline["load_started"], 1) for k, v in self.timeline.items()},
            "samples": [
                {k: (round(v - self.timeline["load_started"], 1) if k == "t" else v) for k, v in s.items()}
                for s in sampler.samples
            ],
            "worker_concurrency": 2,
            "machine_cpus": os.cpu_count(),
            # The machine is shared: how loaded it was says how far the timings can be trusted.
            "load_average_at_start": self.load_at_start,
            "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        }

    # --- set-up: one loop whose output cannot be read ------------------------------------------------
    def _poison_loop(self, stack: Any, clients: Clients, bucket: str, passwords: dict[str, str]) -> None:
        """A Completed loop whose output.json is not JSON: started, answered and corrupted while the
        ingestor and the reconciler are stopped, so no answer is applied before it is corrupted."""
        from hitl.review.portal_client import PortalClient

        for name in ("ingestor", "reconciler"):
            stack.group.stop(name)
        s3, a2i = clients.s3(), clients.a2i()
        s3.put_object(Bucket=bucket, Key="chaos/poison-loop.png", Body=load.image_bytes(self.seed, 10**6))
        content = {
            "taskObject": f"s3://{bucket}/chaos/poison-loop.png",
            "labels": [load.LABEL],
            "routeReasons": ["low_confidence"],
            "routeReason": "low_confidence",
        }
        a2i.start_human_loop(
            HumanLoopName=POISON_LOOP,
            FlowDefinitionArn=clients.flow_arn,
            HumanLoopInput={"InputContent": json.dumps(content)},
        )
        portal = PortalClient(clients.env["HITL_REVIEW_URL"])
        portal.sign_in("alice", passwords["alice"])
        portal.open_task(POISON_LOOP)
        portal.submit(
            POISON_LOOP,
            {
                "annotatedResult": {
                    "boundingBoxes": [{"label": load.LABEL, **load.TRUTH_BOX}],
                    "inputImageProperties": {"width": 96, "height": 72},
                }
            },
        )
        procs.wait_until(
            lambda: a2i.describe_human_loop(HumanLoopName=POISON_LOOP)["HumanLoopStatus"] == "Completed",
            30,
            "the poison loop Completed",
        )
        output = a2i.describe_human_loop(HumanLoopName=POISON_LOOP)["HumanLoopOutput"]["OutputS3Uri"]
        key = output.split("/", 3)[3]
        s3.put_object(Bucket=bucket, Key=key, Body=b"{this is not json")
        for name in ("ingestor", "reconciler"):
            stack.group.restart(name)
        say(f"poison loop {POISON_LOOP} Completed with an unreadable output ({output})")

    # --- after the faults: converge -------------------------------------------------------------------
    def _converge(self, clients: Clients, reviewers: Reviewers, redis_port: int) -> bool:
        """Reconcile and requeue until every accepted image is final and every routed loop answered
        and applied (as the harness sees it). On a loaded machine the backlog drains slowly, so the
        limit is on *stalling*: no image, loop or line moved for ``converge_timeout`` seconds (or an
        hour in all) means it will not converge."""
        started = time.monotonic()
        last_kick = 0.0
        last_progress, progress = started, None
        while time.monotonic() - last_progress < self.scale.converge_timeout and time.monotonic() - started < 3600:
            if time.monotonic() - last_kick > 20:
                with suppress(Exception):
                    clients.celery.send_task("hitl.detect.requeue_stale", queue="detect")
                    clients.celery.send_task("hitl.ingest.reconcile", queue="ingest")
                last_kick = time.monotonic()
            with suppress(Exception):
                if self._settled(clients, reviewers):
                    say("converged")
                    return True
                states = clients.states().values()
                now = (
                    sum(s.get("state") != "queued" for s in states),
                    sum(s.get("loop_status") == "Completed" for s in states),
                    len(reviewers.answered),
                )
                if now != progress:
                    progress, last_progress = now, time.monotonic()
            time.sleep(2.0)
        say(f"not converged: no progress for {self.scale.converge_timeout:.0f}s (at {progress})")
        return False

    def _settled(self, clients: Clients, reviewers: Reviewers) -> bool:
        states = clients.states()
        if len(states) < len(clients.accepted.ids):
            return False
        for state in states.values():
            if state.get("state") == "queued" or not state.get("state"):
                return False
        routed = [
            s for s in states.values() if s.get("route") not in (None, "", "none") and s.get("state") == "detected"
        ]
        pending = [s for s in routed if s.get("loop_status") != "Completed"]
        if pending:
            return False
        # Every answered loop applied: its dataset line or audit verdict is in S3.
        s3 = clients.s3()
        from hitl.settings import get_settings

        settings = get_settings()
        lines = {k.rsplit("/", 1)[-1][:-5] for k in invariants._list_keys(s3, settings.bucket, "datasets/")}
        audits = {k.rsplit("/", 1)[-1][:-5] for k in invariants._list_keys(s3, settings.bucket, "audits/")}
        for state in routed:
            name = state.get("loop_name", "")
            route = state.get("route", "")
            if "low_confidence" in route and name not in lines:
                return False
            if "audit" in route and name not in audits:
                return False
        return True

    def _services_alive(self, stack: Any) -> dict[str, bool]:
        found = {}
        for name in SERVICES_CHECKED:
            pid = stack.group.pid(name)
            found[name] = bool(pid and procs.alive(pid))
        return found


def main(scale: Scale, seed: int, out_dir: Path, run_dir: Path | None, write: bool) -> int:
    from tests.chaos import report

    result = ChaosRun(scale, seed, out_dir, run_dir).run()
    if write:
        report.write(result, out_dir)
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"chaos-{scale.name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    for line in result["broken"]:
        say(f"BROKEN: {line}")
    keys = (
        "images",
        "records",
        "loops",
        "dataset_lines",
        "lost",
        "duplicate_records",
        "duplicate_loops",
        "duplicate_lines",
        "missing_lines",
        "faults",
        "converge_seconds",
        "seed",
        "run_seconds",
    )
    say(json.dumps({k: result.get(k) for k in keys}))
    return 0 if result["invariants_hold"] else 1
