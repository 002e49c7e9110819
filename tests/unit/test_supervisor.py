"""The local stack's supervisor, on real processes: exits are revived with backoff and counted, stops are
respected, and a revive never starts a second copy."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl.stack import procs
from hitl.stack.supervisor import Backoff, Supervisor, read_state

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", "raise SystemExit(3)"]  # exits at once, every time


@pytest.fixture
def group(tmp_path: Path) -> Iterator[procs.ProcessGroup]:
    group = procs.ProcessGroup(tmp_path)
    yield group
    group.stop_all(grace=2)


@pytest.fixture
def supervised(group: procs.ProcessGroup) -> Iterator[Supervisor]:
    supervisor = Supervisor(group, Backoff(initial=0.2, maximum=0.8, reset_after=30))
    stop = threading.Event()
    thread = threading.Thread(target=supervisor.run, args=(stop, 0.05), daemon=True)
    thread.start()
    yield supervisor
    stop.set()
    thread.join(10)


def test_backoff_doubles_up_to_the_maximum_and_resets_after_a_long_run() -> None:
    backoff = Backoff(initial=1, maximum=5, reset_after=60)
    waits = [backoff.next(None, 0)]
    for _ in range(4):
        waits.append(backoff.next(waits[-1], up_for=2))
    assert waits == [1, 2, 4, 5, 5]
    assert backoff.next(5, up_for=61) == 1


def test_a_killed_process_is_restarted_as_it_was_started_and_counted(
    group: procs.ProcessGroup, supervised: Supervisor, tmp_path: Path
) -> None:
    first = group.start("worker", SLEEPER, {"MARK": "kept"})
    procs.wait_until(lambda: "worker" in supervised.services, 5, "the supervisor sees the worker")
    os.kill(first, signal.SIGKILL)

    procs.wait_until(lambda: (group.pid("worker") or first) != first, 10, "the worker restarted")
    second = group.pid("worker")
    assert second is not None
    assert procs.alive(second)
    assert "MARK=kept" in Path(f"/proc/{second}/environ").read_text().replace("\0", " "), "its environment kept"
    state = json.loads((tmp_path / "supervisor.json").read_text())["services"]["worker"]
    assert state["restarts"] == 1
    assert state["pid"] == second


def test_a_crash_loop_waits_longer_each_time(group: procs.ProcessGroup, supervised: Supervisor) -> None:
    group.start("crasher", CRASHER)
    # restart number → (the wait chosen, the time from the exit seen to the restart)
    seen: dict[int, tuple[float, float]] = {}

    def restarted_four_times() -> bool:
        state = supervised.services.get("crasher")
        if state and state.restarts and state.restarts not in seen and state.last_restart_at and state.last_exit_at:
            seen[state.restarts] = (state.backoff or 0.0, state.last_restart_at - state.last_exit_at)
        return len(seen) >= 4

    procs.wait_until(restarted_four_times, 20, "four restarts", interval=0.01)
    # Waits double from 0.2 s and are capped at 0.8 s (uncapped, the fourth would be 1.6 s). The time
    # each restart took to come is checked against its wait, not the gaps between restarts, which
    # also hold a Python start-up and so grow on a loaded machine.
    assert [seen[n][0] for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 0.8]
    for wait, waited in (seen[n] for n in (1, 2, 3, 4)):
        assert wait <= waited < 1.6, (wait, waited)


def test_a_process_stopped_on_purpose_stays_stopped(group: procs.ProcessGroup, supervised: Supervisor) -> None:
    group.start("worker", SLEEPER)
    procs.wait_until(lambda: "worker" in supervised.services, 5, "the supervisor sees the worker")
    assert group.stop("worker", grace=2)
    threading.Event().wait(1.0)  # several of the supervisor's looks
    assert group.pid("worker") is None
    assert supervised.services["worker"].restarts == 0
    assert read_state(group.run_dir)["services"]["worker"]["restarts"] == 0


def test_revive_starts_one_copy_however_many_ask(group: procs.ProcessGroup) -> None:
    first = group.start("worker", SLEEPER)
    os.kill(first, signal.SIGKILL)
    procs.wait_until(lambda: not procs.alive(first), 5, "killed")
    results: list[int | None] = []
    threads = [threading.Thread(target=lambda: results.append(group.revive("worker"))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    started = [pid for pid in results if pid is not None]
    assert len(started) == 1, results
    assert group.pid("worker") == started[0]
    assert group.revive("worker") is None, "a running process is not revived"


def test_stack_down_stops_the_supervisor_first_and_nothing_comes_back(group: procs.ProcessGroup) -> None:
    from hitl.stack import local

    for name in ("detector", "dispatcher", "review"):
        group.start(name, SLEEPER)
    group.start("supervisor", [sys.executable, "-m", "hitl.stack.supervisor", str(group.run_dir)])
    procs.wait_until(lambda: read_state(group.run_dir)["services"].keys() >= {"detector", "review"}, 20, "supervising")
    pids = {name: group.pid(name) for name in group.names()}

    stopped = local.down(group.run_dir)

    assert stopped[0] == "supervisor"
    assert set(stopped) == {"supervisor", "detector", "dispatcher", "review"}
    threading.Event().wait(1.5)
    assert group.names() == []
    assert not [name for name, pid in pids.items() if pid and procs.alive(pid)]
