"""The local stack's restart policy: a process that exits by itself is started again, with backoff.

On Kubernetes the pod's restart policy does this, in compose ``restart: unless-stopped``; ``hitl stack
up`` starts this supervisor (``python -m hitl.stack.supervisor <run_dir>``) beside the services. Every
second it looks at the stack's pid files (:class:`~hitl.stack.procs.ProcessGroup`): a pid file naming a
process that is gone means the process exited by itself (a stop removes the pid file first), and it is
revived with the argv and environment it was started with, after a wait that doubles with each exit
in a row (``stack_restart_backoff_*``). Each exit and restart is logged and counted in
``<run_dir>/supervisor.json``, which ``hitl stack status`` shows. moto's server is not restarted: its
state is in memory, and a fresh one would serve an empty object store (``make down && make up``
restores the last snapshot).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hitl.logs import get_logger
from hitl.stack.procs import ProcessGroup, alive

log = get_logger("hitl.stack.supervisor")

NAME = "supervisor"
NOT_RESTARTED = ("moto", NAME)
STATE_FILE = "supervisor.json"


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0
    reset_after: float = 60.0  # up this long: the next exit waits ``initial`` again

    def next(self, previous: float | None, up_for: float) -> float:
        if previous is None or up_for >= self.reset_after:
            return self.initial
        return min(self.maximum, previous * 2)


@dataclass
class ServiceState:
    pid: int | None = None
    restarts: int = 0
    started_at: float = 0.0  # when the supervisor first saw this pid, or revived it
    last_exit_at: float | None = None
    last_restart_at: float | None = None
    restart_at: float | None = None  # set while an exited process waits for its restart
    backoff: float | None = None


class Supervisor:
    def __init__(self, group: ProcessGroup, backoff: Backoff, clock: Callable[[], float] = time.time) -> None:
        self.group = group
        self.backoff = backoff
        self.clock = clock
        self.services: dict[str, ServiceState] = {}

    @property
    def state_file(self) -> Path:
        return self.group.run_dir / STATE_FILE

    def tick(self) -> None:
        """One look at every process of the stack: note exits, revive those whose wait is over."""
        now = self.clock()
        names = [n for n in self.group.names() if n not in NOT_RESTARTED]
        for name, state in self.services.items():
            if name not in names:  # stopped on purpose: no restart pending
                state.restart_at = None
        for name in names:
            state = self.services.setdefault(name, ServiceState())
            pid = self.group.pid(name)
            if pid is not None and alive(pid):
                if state.pid != pid:
                    state.pid, state.started_at = pid, now
                continue
            if state.restart_at is None:
                state.backoff = self.backoff.next(state.backoff, now - state.started_at)
                state.restart_at = now + state.backoff
                state.last_exit_at = now
                log.warning(
                    "service_exited", service=name, pid=pid, restarts=state.restarts,
                    restart_in_seconds=state.backoff, log_file=str(self.group.log_dir / f"{name}.log"),
                )  # fmt: skip
            if now >= state.restart_at:
                self._revive(name, state, pid, now)
        self._write()

    def _revive(self, name: str, state: ServiceState, old_pid: int | None, now: float) -> None:
        try:
            new_pid = self.group.revive(name)
        except (OSError, ValueError) as exc:  # a start that fails is tried again after the next wait
            log.exception("service_restart_failed", service=name, error=str(exc)[:300])
            state.backoff = self.backoff.next(state.backoff, 0.0)
            state.restart_at = now + state.backoff
            return
        state.restart_at = None
        if new_pid is None:  # stopped on purpose meanwhile, or someone else started it
            return
        state.restarts += 1
        state.pid, state.started_at, state.last_restart_at = new_pid, now, now
        log.warning("service_restarted", service=name, old_pid=old_pid, pid=new_pid, restarts=state.restarts)

    def _write(self) -> None:
        services = {name: asdict(state) for name, state in self.services.items()}
        payload = {"updated_at": self.clock(), "pid": os.getpid(), "services": services}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
        tmp.replace(self.state_file)

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        log.info("supervisor_started", run_dir=str(self.group.run_dir))
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # one bad look (a pid file being written) never ends supervision
                log.exception("supervisor_tick_failed")
            stop.wait(interval)
        log.info("supervisor_stopped")


def read_state(run_dir: Path) -> dict[str, Any]:
    """What ``supervisor.json`` says, and whether the supervisor that wrote it still runs."""
    group = ProcessGroup(run_dir)
    pid = group.pid(NAME)
    try:
        state: dict[str, Any] = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        state = {"services": {}}
    state["running"] = pid is not None and alive(pid)
    return state


def main(argv: list[str] | None = None) -> None:
    from hitl import logs
    from hitl.settings import get_settings

    parser = argparse.ArgumentParser(
        prog="python -m hitl.stack.supervisor",
        description="Restart the local stack's services that exit by themselves (started by `hitl stack up`).",
    )
    parser.add_argument("run_dir", help="the stack's run directory (its pid files and supervisor.json)")
    run_dir = parser.parse_args(argv).run_dir
    settings = get_settings()
    logs.configure(NAME, settings.log_level)
    backoff = Backoff(
        settings.stack_restart_backoff_initial, settings.stack_restart_backoff_max, settings.stack_restart_backoff_reset
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    Supervisor(ProcessGroup(Path(run_dir).resolve()), backoff).run(stop)


if __name__ == "__main__":
    main()
