"""Start, watch and stop the local stack's processes, by pid.

Each process started gets a pid file under ``<run_dir>/pids`` and a log under ``<run_dir>/logs``;
stopping reads those pid files and signals exactly those processes (their process groups), so a
``down`` never touches anything it did not start. Starting, stopping and reviving one name hold that
name's lock file, so the supervisor and a caller (``down``, a test, the chaos harness) never both
start it, and a process stopped on purpose (its pid file removed) is never revived.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to client sockets: ports below it are never taken by an
    outgoing connection between choosing them and a service binding them."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_range(count: int = 1, low: int = 20000) -> int:
    """The first of ``count`` consecutive loopback ports that are free now, below the ephemeral range."""
    high = max(low + count + 1, _ephemeral_low() - count - 1)
    for _ in range(200):
        base = random.randint(low, high)  # noqa: S311 - spreading ports, not a secret
        if all(_bindable(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} free consecutive ports between {low} and {high}")


def free_port() -> int:
    return free_port_range(1)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The thing being waited for may not answer at all yet.
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    raise TimeoutError(f"{what} did not come up within {timeout:.0f}s")


def http_ok(url: str) -> bool:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP URL: {url}")
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
        return bool(200 <= resp.status < 500)


def venv_bin(name: str) -> str:
    """An executable installed beside the running interpreter (the project's venv)."""
    return str(Path(sys.executable).parent / name)


class ProcessGroup:
    """The processes of one stack, tracked through pid files in ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.pid_dir = run_dir / "pids"
        self.log_dir = run_dir / "logs"

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        with (self.pid_dir / f"{name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            yield

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        with self._locked(name):
            return self._start(name, argv, env)

    def _start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        existing = self.pid(name)
        if existing is not None and alive(existing):
            return existing
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: down signals the group, nothing else
        )
        log.close()
        (self.pid_dir / f"{name}.pid").write_text(str(proc.pid))
        self._save_command(name, argv, env)
        return proc.pid

    def _command_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.cmd.json"

    def _save_command(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None) -> None:
        """How ``name`` was started (its argv and the environment it was given beyond our own), so it
        can be restarted alike; owner-only, as the stack's environment names its local keys."""
        path = self._command_file(name)
        path.touch(mode=0o600)
        path.write_text(json.dumps({"argv": list(argv), "env": dict(env or {})}))

    def restart(self, name: str, extra_env: Mapping[str, str] | None = None, grace: float = 15.0) -> int:
        """Stop ``name`` if it runs, then start it again with the argv and environment it was started
        with (plus ``extra_env``)."""
        with self._locked(name):
            command = json.loads(self._command_file(name).read_text())
            self._stop(name, grace)
            return self._start(name, command["argv"], {**command["env"], **(extra_env or {})})

    def revive(self, name: str) -> int | None:
        """Start ``name`` again as it was started, if its pid file names a process that is gone (it
        exited by itself); None when it runs, or was stopped on purpose (no pid file)."""
        with self._locked(name):
            pid = self.pid(name)
            if pid is None or alive(pid) or not self._command_file(name).exists():
                return None
            command = json.loads(self._command_file(name).read_text())
            (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)
            return self._start(name, command["argv"], command["env"])

    def pid(self, name: str) -> int | None:
        path = self.pid_dir / f"{name}.pid"
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def names(self) -> list[str]:
        if not self.pid_dir.exists():
            return []
        return sorted(p.stem for p in self.pid_dir.glob("*.pid"))

    def stop(self, name: str, grace: float = 15.0) -> bool:
        with self._locked(name):
            return self._stop(name, grace)

    def _stop(self, name: str, grace: float) -> bool:
        pid = self.pid(name)
        path = self.pid_dir / f"{name}.pid"
        if pid is None:
            return False
        stopped = False
        if alive(pid):
            stopped = True
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                _signal_group(pid, signal.SIGKILL)
                time.sleep(0.2)
        path.unlink(missing_ok=True)
        return stopped

    def stop_together(self, names: Sequence[str], grace: float = 15.0) -> list[str]:
        """Stop ``names`` at once, each signalled and waited for in a thread of its own: a stack goes
        down in its slowest process's time, not in the sum of all. Returns those that were running."""
        if not names:
            return []
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            stopped = list(pool.map(lambda name: self.stop(name, grace), names))
        return [name for name, was_running in zip(names, stopped, strict=True) if was_running]

    def stop_all(self, order: Sequence[str] = (), grace: float = 15.0) -> list[str]:
        """Stop ``order`` first (e.g. workers before their broker), then whatever else is tracked."""
        stopped = []
        names = [n for n in order if n in self.names()] + [n for n in self.names() if n not in order]
        for name in names:
            if self.stop(name, grace):
                stopped.append(name)
        return stopped


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
