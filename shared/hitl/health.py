"""Liveness and readiness by files, for exec probes that need nothing but Python.

A worker's main process touches the heartbeat file every few seconds and writes the ready file
once it consumes; ``python -m hitl.health --max-age 60`` exits non-zero when the heartbeat is stale
(liveness) and ``--ready`` when the ready file is missing (readiness).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

# In Kubernetes /tmp is an emptyDir private to the pod.
DEFAULT_HEARTBEAT = "/tmp/hitl/heartbeat"  # noqa: S108
DEFAULT_READY = "/tmp/hitl/ready"  # noqa: S108


def heartbeat_path() -> Path:
    return Path(os.environ.get("HITL_HEARTBEAT_FILE", DEFAULT_HEARTBEAT))


def ready_path() -> Path:
    return Path(os.environ.get("HITL_READY_FILE", DEFAULT_READY))


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def start_heartbeat(interval: float = 10.0, on_beat: object = None) -> threading.Event:
    """Touch the heartbeat file every ``interval`` s from a daemon thread; set the event to stop."""
    stop = threading.Event()
    path = heartbeat_path()

    def beat() -> None:
        while not stop.is_set():
            touch(path)
            if callable(on_beat):
                on_beat()
            stop.wait(interval)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    return stop


def mark_ready(ready: bool) -> None:
    path = ready_path()
    if ready:
        touch(path)
    else:
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Exit 0 when this process's service is alive (or ready).")
    parser.add_argument("--max-age", type=float, default=60.0, help="seconds the heartbeat may be old")
    parser.add_argument("--ready", action="store_true", help="check readiness instead of liveness")
    args = parser.parse_args(argv)
    if args.ready:
        ok = ready_path().exists()
        print("ready" if ok else f"not ready: {ready_path()} missing")
        return 0 if ok else 1
    try:
        age = time.time() - heartbeat_path().stat().st_mtime
    except FileNotFoundError:
        print(f"no heartbeat at {heartbeat_path()}")
        return 1
    print(f"heartbeat {age:.1f}s old")
    return 0 if age <= args.max_age else 1


if __name__ == "__main__":
    sys.exit(main())
