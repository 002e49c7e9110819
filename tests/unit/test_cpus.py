"""The cores a process may use (``hitl.cpus``) and the worker arguments sized from them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hitl.cpus import available_cpus, cgroup_cpu_quota, worker_processes
from hitl.worker import worker_argv


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "200000 100000\n"}, 2.0),  # cgroup v2, a limit of 2 CPUs
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),  # no limit
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),  # no cgroup files (not in a container)
    ],
)
def test_cgroup_cpu_quota(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == expected


def test_a_containers_cpu_limit_bounds_the_cores_a_worker_counts(tmp_path: Path) -> None:
    """A pod sees every core of its node; its CPU limit, rounded up, is what it may use."""
    cores = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{(cores + 3) * 100000} 100000\n")  # more than the machine has
    assert available_cpus(tmp_path) == cores


def test_a_prefork_worker_without_a_concurrency_gets_the_cores_it_may_use() -> None:
    argv = worker_argv("detector", ["detect"], "prefork", None, "INFO")
    assert argv[argv.index("--concurrency") + 1] == str(available_cpus())
    argv = worker_argv("detector", ["detect"], "prefork", 3, "INFO")
    assert argv[argv.index("--concurrency") + 1] == "3"
    assert "--concurrency" not in worker_argv("beat", ["x"], "solo", None, "INFO")


def test_a_configured_concurrency_wins_over_the_cores() -> None:
    assert worker_processes(5, cpus=3) == 5
    assert worker_processes(0, cpus=3) == 3
    assert worker_processes(None) == available_cpus()
