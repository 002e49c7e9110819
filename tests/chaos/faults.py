"""Seeded faults against a running local stack, each logged with when it started and ended.

The plan (kinds, gaps, durations, victims) comes from the seed alone; the injector then applies it
against real processes by pid: SIGKILL (a worker child; a service's main process and what it leaves
behind, restarted 2-10 s later with the same argv and environment), SIGSTOP/SIGCONT of moto's server
(never killed: its state is in memory), the review service stopped for a while or restarted with a
request quota (throttling), Redis killed and restarted on its append-only file, and replays of
dispatch tasks and of Completed events.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hitl.stack import procs
from tests.chaos.config import CHILD_KILLED_SERVICES, KILLED_SERVICES, Scale

DISPATCH_TASK = "hitl.dispatch.start_loop"
DETAIL_TYPE = "SageMaker A2I HumanLoop Status Change"
REPLAYS_PER_FAULT = 5
THROTTLED_RATE = "2"


@dataclass
class Planned:
    kind: str
    gap: float  # seconds after the previous fault's start
    duration: float  # outage or restart delay
    pick: int  # seeds the victim choice (child, loops, tasks)


@dataclass
class Fault:
    kind: str
    target: str
    started: float
    ended: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def make_plan(scale: Scale, seed: int) -> list[Planned]:
    rng = random.Random(seed)
    kinds = list(scale.kinds)
    rng.shuffle(kinds)
    pool = [k for k in scale.kinds if k not in ("review_throttle",)]  # throttling once
    kinds += [rng.choice(pool) for _ in range(scale.extra_faults)]
    # Replays need finished loops to replay: none in the first third of the run.
    first = max(1, len(kinds) // 3)
    kinds = (
        [k for k in kinds[:first] if not k.startswith("replay")]
        + [k for k in kinds if k.startswith("replay") and k in kinds[:first]]
        + kinds[first:]
    )
    plan = []
    for kind in kinds:
        if kind == "moto_pause":
            duration = scale.moto_pause
        elif kind == "review_down":
            duration = scale.review_down
        elif kind == "review_throttle":
            duration = scale.review_throttle
        elif kind == "redis_restart":
            duration = rng.uniform(2.0, 5.0)
        else:
            duration = rng.uniform(2.0, 10.0)
        plan.append(Planned(kind, rng.uniform(*scale.interval), duration, rng.randrange(1 << 30)))
    return plan


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(x) for x in (task / "children").read_text().split()]
    return found


class Injector:
    """Applies a plan in a thread; outages end (and killed services restart) on timers."""

    def __init__(
        self,
        plan: list[Planned],
        group: procs.ProcessGroup,
        redis_group: procs.ProcessGroup,
        redis_port: int,
        clients: Any,
        log_path: Path,
    ) -> None:
        self.plan = plan
        self.group = group
        self.redis_group = redis_group
        self.redis_port = redis_port
        self.clients = clients  # gives sqs/a2i clients, the events queue url, and the Celery app
        self.log_path = log_path
        self.faults: list[Fault] = []
        self.thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self.stop = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # targets under a fault right now
        self._timers: list[threading.Thread] = []
        self.exits: list[dict[str, Any]] = []
        self.supervised: list[str] = []
        self.supervisor_stop = threading.Event()
        self.supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    # --- bookkeeping ---------------------------------------------------------------------------------
    def _log(self, fault: Fault, event: str) -> None:
        line = {"event": event, "at": time.time(), **asdict(fault)}
        with self._lock, self.log_path.open("a") as out:
            out.write(json.dumps(line, default=str) + "\n")
        print(f"[chaos] {event} {fault.kind} {fault.target} {fault.detail or ''}{fault.error or ''}", flush=True)

    def _begin(self, kind: str, target: str, **detail: Any) -> Fault:
        fault = Fault(kind=kind, target=target, started=time.time(), detail=detail)
        with self._lock:
            self.faults.append(fault)
        self._log(fault, "fault_started")
        return fault

    def _end(self, fault: Fault, error: str | None = None) -> None:
        fault.ended = time.time()
        fault.error = error
        self._log(fault, "fault_ended")

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        def run() -> None:
            self.stop.wait(delay)
            action()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._timers.append(thread)

    def _wait_free(self, *targets: str) -> None:
        while True:
            with self._lock:
                if not self._busy & set(targets):
                    self._busy |= set(targets)
                    return
            time.sleep(0.2)

    def _free(self, *targets: str) -> None:
        with self._lock:
            self._busy -= set(targets)

    def _dependencies_up(self) -> None:
        """A service is restarted only once what it starts against answers (as an orchestrator's
        readiness ordering would); moto paused or Redis down delays it."""
        self._wait_free("moto", "redis")
        self._free("moto", "redis")

    # --- the thread ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def wait(self, timeout: float) -> bool:
        self.thread.join(timeout)
        for timer in self._timers:
            timer.join(max(0.0, timeout))
        return self.done.is_set()

    # --- the restart policy every deployment has (compose: unless-stopped; Kubernetes: Always) ---------
    def _supervise(self) -> None:
        """A service that exits by itself (not under a fault) is restarted and the exit is recorded:
        the run reports it instead of hiding it."""
        while not self.supervisor_stop.wait(2.0):
            for name in self.supervised:
                with self._lock:
                    if name in self._busy:
                        continue
                pid = self.group.pid(name)
                if pid is None or procs.alive(pid):
                    continue
                log_tail = ""
                with contextlib.suppress(OSError):
                    log_tail = (self.group.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                exit_info = {"service": name, "at": time.time(), "pid": pid, "log_tail": log_tail[-600:]}
                try:
                    self._wait_free(name)
                    exit_info["new_pid"] = self._restart(name)
                except Exception as exc:
                    exit_info["error"] = str(exc)
                finally:
                    self._free(name)
                self.exits.append(exit_info)
                print(f"[chaos] service {name} (pid {pid}) exited by itself; restarted", flush=True)
                with self._lock, self.log_path.open("a") as out:
                    out.write(json.dumps({"event": "unexpected_exit", **exit_info}) + "\n")

    def start_supervisor(self, names: list[str]) -> None:
        self.supervised = names
        self.supervisor.start()

    def stop_supervisor(self) -> None:
        self.supervisor_stop.set()
        self.supervisor.join(30)

    def _run(self) -> None:
        try:
            next_at = time.monotonic()
            for planned in self.plan:
                next_at += planned.gap
                self.stop.wait(max(0.0, next_at - time.monotonic()))
                if self.stop.is_set():
                    break
                try:
                    self._apply(planned)
                except Exception as exc:  # logged with its fault; the run goes on
                    with self._lock:
                        started = [f for f in self.faults if f.kind.startswith(planned.kind) and f.ended is None]
                    fault = started[-1] if started else self._begin(planned.kind, "-")
                    self._end(fault, f"{type(exc).__name__}: {exc}")
            for timer in self._timers:
                timer.join()
        finally:
            self.done.set()

    def _apply(self, planned: Planned) -> None:
        kind = planned.kind
        rng = random.Random(planned.pick)
        if kind.startswith("kill_main:"):
            self._kill_main(kind.split(":", 1)[1], planned.duration)
        elif kind == "kill_child":
            self._kill_child(rng.choice(CHILD_KILLED_SERVICES), rng)
        elif kind == "moto_pause":
            self._pause_moto(planned.duration)
        elif kind == "review_down":
            self._review_down(planned.duration)
        elif kind == "review_throttle":
            self._review_throttle(planned.duration)
        elif kind == "redis_restart":
            self._redis_restart(planned.duration)
        elif kind == "replay_dispatch":
            self._replay_dispatch(rng)
        elif kind == "replay_completed":
            self._replay_completed(rng)
        else:
            raise ValueError(f"unknown fault kind {kind}")

    # --- processes ---------------------------------------------------------------------------------
    def _restart(self, name: str, extra_env: dict[str, str] | None = None) -> int:
        self._dependencies_up()
        return self.group.restart(name, extra_env)

    def _kill_main(self, name: str, restart_after: float) -> None:
        assert name in KILLED_SERVICES
        self._wait_free(name)
        pid = self.group.pid(name)
        fault = self._begin(f"kill_main:{name}", name, pid=pid, restart_after=round(restart_after, 1))
        if pid is None:
            self._free(name)
            self._end(fault, "not running")
            return
        left = children(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            fault.detail["already_dead"] = True
        procs.wait_until(lambda: not procs.alive(pid), 10, f"{name} dead")
        # The container goes with its first process: whatever it left behind dies too.
        for child in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

        def restart() -> None:
            try:
                fault.detail["new_pid"] = self._restart(name)
                self._end(fault)
            except Exception as exc:
                self._end(fault, f"restart failed: {exc}")
            finally:
                self._free(name)

        self._later(restart_after, restart)

    def _kill_child(self, name: str, rng: random.Random) -> None:
        pid = self.group.pid(name)
        kids = children(pid) if pid else []
        fault = self._begin("kill_child", name, main_pid=pid)
        if not kids:
            self._end(fault, "no worker child")
            return
        victim = rng.choice(sorted(kids))
        fault.detail["child_pid"] = victim
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        self._end(fault)  # the worker's pool replaces its child itself

    def _pause_moto(self, seconds: float) -> None:
        self._wait_free("moto")
        pid = self.group.pid("moto")
        fault = self._begin("moto_pause", "moto", pid=pid, seconds=seconds)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)

        def resume() -> None:
            os.kill(pid, signal.SIGCONT)
            self._free("moto")
            self._end(fault)

        self._later(seconds, resume)

    def _review_down(self, seconds: float) -> None:
        self._wait_free("review")
        fault = self._begin("review_down", "review", seconds=seconds)
        self.group.stop("review")

        def back() -> None:
            try:
                fault.detail["new_pid"] = self._restart("review")
                self._end(fault)
            except Exception as exc:
                self._end(fault, f"restart failed: {exc}")
            finally:
                self._free("review")

        self._later(seconds, back)

    def _review_throttle(self, seconds: float) -> None:
        self._wait_free("review")
        fault = self._begin("review_throttle", "review", seconds=seconds, rate_per_second=THROTTLED_RATE)
        self._restart("review", {"HITL_REVIEW_API_RATE_PER_SECOND": THROTTLED_RATE})

        def back() -> None:
            try:
                self._restart("review", {"HITL_REVIEW_API_RATE_PER_SECOND": "0"})
                self._end(fault)
            except Exception as exc:
                self._end(fault, f"restart failed: {exc}")
            finally:
                self._free("review")

        self._later(seconds, back)

    def _redis_restart(self, seconds: float) -> None:
        self._wait_free("redis")
        pid = self.redis_group.pid("redis")
        fault = self._begin("redis_restart", "redis", pid=pid, down_seconds=round(seconds, 1))
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        procs.wait_until(lambda: not procs.alive(pid), 10, "redis dead")

        def back() -> None:
            try:
                fault.detail["new_pid"] = self.redis_group.restart("redis")
                procs.wait_until(lambda: _redis_loaded(self.redis_port), 60, "redis loaded its AOF")
                self._end(fault)
            except Exception as exc:
                self._end(fault, f"restart failed: {exc}")
            finally:
                self._free("redis")

        self._later(seconds, back)

    # --- replays -----------------------------------------------------------------------------------
    def _replay_dispatch(self, rng: random.Random) -> None:
        """Dispatch tasks sent again for detections that already have a loop (preferably finished)."""
        fault = self._begin("replay_dispatch", "dispatch")
        routed = self._candidates(lambda: [r for r in self.clients.routed_detections() if r[2] == "Completed"])
        routed = routed or self._candidates(self.clients.routed_detections, wait=30.0)
        finished = [r for r in routed if r[2] in ("Completed",)]
        chosen = rng.sample(finished, min(REPLAYS_PER_FAULT, len(finished)))
        if len(chosen) < REPLAYS_PER_FAULT:
            rest = [r for r in routed if r not in chosen]
            chosen += rng.sample(rest, min(REPLAYS_PER_FAULT - len(chosen), len(rest)))
        for image, detection, _ in chosen:
            self.clients.celery.send_task(
                DISPATCH_TASK,
                kwargs={"image_id": image, "detection_id": detection, "enqueued_at": time.time()},
                queue="dispatch",
            )
        fault.detail["replayed"] = [[i[:12], d, s] for i, d, s in chosen]
        self._end(fault)

    def _candidates(self, find: Callable[[], list[Any]], wait: float = 60.0) -> list[Any]:
        """What to replay; early in a run, wait a little for finished loops to exist."""
        deadline = time.monotonic() + wait
        while True:
            try:
                found = find()
            except Exception:  # Redis restarting under another fault: look again
                found = []
            if len(found) >= REPLAYS_PER_FAULT or time.monotonic() > deadline or self.stop.is_set():
                return found
            time.sleep(1.0)

    def _replay_completed(self, rng: random.Random) -> None:
        """Completed events sent again to the events queue, as EventBridge delivers them."""
        fault = self._begin("replay_completed", "events")
        completed = self._candidates(
            lambda: [n for n in self.clients.completed_loops() if n != self.clients.poison_loop]
        )
        chosen = rng.sample(completed, min(REPLAYS_PER_FAULT, len(completed)))
        a2i, sqs = self.clients.a2i(), self.clients.sqs()
        for name in chosen:
            # The review service or moto may be down under another fault: the replay waits for them.
            deadline = time.monotonic() + 120
            while True:
                try:
                    found = a2i.describe_human_loop(HumanLoopName=name)
                    body = json.dumps(completed_event(found))
                    sqs.send_message(QueueUrl=self.clients.events_queue_url, MessageBody=body)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(2.0)
        fault.detail["replayed"] = chosen
        self._end(fault)


def completed_event(found: dict[str, Any]) -> dict[str, Any]:
    """DescribeHumanLoop's answer as the EventBridge event an SQS target receives (docs/formats.md §3)."""
    created = found.get("CreationTime")
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": "aws.sagemaker",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "us-east-1",
        "resources": [found.get("HumanLoopArn", "")],
        "detail": {
            "creationTime": created.isoformat() if hasattr(created, "isoformat") else created,
            "failureCode": None,
            "failureReason": None,
            "flowDefinitionArn": found.get("FlowDefinitionArn"),
            "humanLoopArn": found.get("HumanLoopArn"),
            "humanLoopName": found["HumanLoopName"],
            "humanLoopOutput": {"outputS3Uri": found["HumanLoopOutput"]["OutputS3Uri"]},
            "humanLoopStatus": found["HumanLoopStatus"],
        },
    }


def _redis_loaded(port: int) -> bool:
    import redis

    info = redis.Redis(port=port, socket_timeout=2).info("persistence")
    return not info.get("loading") and not info.get("async_loading")
