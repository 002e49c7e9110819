"""The cores a process may use: its CPU affinity, bounded by its cgroup's CPU quota.

A container's CPU limit is a cgroup quota, which neither ``os.cpu_count()`` nor the affinity shows: a
pod limited to 2 CPUs on a 64-core node sees 64. Celery's default concurrency and the model's threads
are sized from this instead.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, bounded by its cgroup's CPU quota (a
    container's CPU limit; a pod sees every core of its node) rounded up."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup)
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def worker_processes(concurrency: int | None, cpus: int | None = None) -> int:
    """A worker's process count: its configured concurrency, else one per core it may use (``cpus``,
    by default :func:`available_cpus`)."""
    return concurrency or cpus or available_cpus()


def cgroup_cpu_quota(cgroup: Path) -> float | None:
    """CPUs the cgroup may use (v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` ÷ ``cpu.cfs_period_us``), or None
    without a limit."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None
