"""A stack process restarted with the argv and environment it was started with."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from hitl.stack import procs

SCRIPT = "import os, sys, time; print(os.environ['CHAOS_MARK'], sys.argv[1], flush=True); time.sleep(60)"


def test_restart_reuses_the_recorded_argv_and_environment(tmp_path: Path) -> None:
    group = procs.ProcessGroup(tmp_path)
    first = group.start("sleeper", [sys.executable, "-c", SCRIPT, "arg1"], {"CHAOS_MARK": "one"})
    try:
        command_file = tmp_path / "pids" / "sleeper.cmd.json"
        assert stat.S_IMODE(command_file.stat().st_mode) == 0o600, "the environment is readable by its owner only"
        assert "PATH" not in command_file.read_text(), "only the environment given, not the caller's own"
        procs.wait_until(lambda: "one arg1" in (tmp_path / "logs" / "sleeper.log").read_text(), 20, "first start")
        os.kill(first, 9)
        procs.wait_until(lambda: not procs.alive(first), 10, "killed")

        second = group.restart("sleeper")
        assert second != first
        assert procs.alive(second)
        procs.wait_until(lambda: (tmp_path / "logs" / "sleeper.log").read_text().count("one arg1") == 2, 20, "again")

        third = group.restart("sleeper", {"CHAOS_MARK": "two"})
        assert not procs.alive(second), "a running process is stopped before its restart"
        procs.wait_until(lambda: "two arg1" in (tmp_path / "logs" / "sleeper.log").read_text(), 20, "with extra env")
        assert procs.alive(third)
    finally:
        group.stop_all(grace=2)


# Takes a second to stop after SIGTERM, noting when it was asked and when it was done.
SLOW_TO_STOP = """
import signal, sys, time
def stop(*_):
    print("asked", time.time(), flush=True)
    time.sleep(1.0)
    print("done", time.time(), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


def test_processes_stopped_together_are_all_asked_before_any_is_done(tmp_path: Path) -> None:
    group = procs.ProcessGroup(tmp_path)
    names = ["a", "b", "c"]
    pids = [group.start(name, [sys.executable, "-c", SLOW_TO_STOP]) for name in names]
    try:
        for name in names:
            procs.wait_until(lambda n=name: "ready" in (tmp_path / "logs" / f"{n}.log").read_text(), 20, f"{name} up")
        assert group.stop_together([*names, "never-started"], grace=10) == names
        assert not any(procs.alive(pid) for pid in pids)
        marks = {}
        for name in names:
            log = (tmp_path / "logs" / f"{name}.log").read_text()
            lines = dict(line.split() for line in log.split("\n")[1:] if line)
            marks[name] = (float(lines["asked"]), float(lines["done"]))
        assert max(asked for asked, _ in marks.values()) < min(done for _, done in marks.values())
        assert group.names() == []
    finally:
        group.stop_all(grace=2)
