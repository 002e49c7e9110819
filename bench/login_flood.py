"""A sign-in flood against a running review service, measured from outside the process.

``flood(...)`` sends ``attempts`` sign-ins (form fetch + POST with a wrong password) from
``clients`` concurrent clients, each presenting its own address through X-Forwarded-For (the
service must trust the caller as a proxy), half of them guessing at one real account. Meanwhile it
samples the service's resident memory from /proc and has a signed-in reviewer fetch the queue
every ``queue_interval`` seconds. Used by ``bench/bench_security.py`` and ``tests/security``.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    """Resident memory of ``pid`` (VmRSS now, or VmHWM: the peak since it started), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field_name} not found for pid {pid}")


@dataclass
class FloodResult:
    attempts: int
    clients: int
    seconds: float
    statuses: dict[str, int]
    share_429: float
    first_429_after: int | None  # attempts answered before the first 429
    rss_before_mb: float
    rss_peak_sampled_mb: float
    rss_peak_hwm_mb: float
    queue_requests: int
    queue_ok: int
    queue_ms_median: float
    queue_ms_max: float
    signins_total: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attempt(url: str, address: str, name: str) -> int:
    with httpx.Client(base_url=url, headers={"X-Forwarded-For": address}, timeout=120) as client:
        page = client.get("/login")
        found = FORM_TOKEN.search(page.text)
        if not found:
            return page.status_code
        response = client.post(
            "/login", data={"csrf_token": found.group(1), "username": name, "password": "wrong-password-123"}
        )
        return response.status_code


def signins_total(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=30).text
    return {m[0]: float(m[1]) for m in re.findall(r'hitl_review_signins_total\{outcome="(\w+)"\} ([0-9.e+]+)', text)}


def flood(
    url: str,
    pid: int,
    queue_client: httpx.Client,
    *,
    attempts: int = 500,
    clients: int = 40,
    target: str = "alice",
    queue_interval: float = 0.25,
) -> FloodResult:
    rss_before = rss_mb(pid)
    samples: list[float] = []
    queue_results: list[tuple[int, float]] = []
    done = threading.Event()

    def watch() -> None:
        next_queue = time.monotonic()
        while not done.is_set():
            samples.append(rss_mb(pid))
            if time.monotonic() >= next_queue:
                started = time.perf_counter()
                try:
                    status = queue_client.get("/portal/api/queue").status_code
                except httpx.HTTPError:
                    status = 0
                queue_results.append((status, (time.perf_counter() - started) * 1000))
                next_queue = time.monotonic() + queue_interval
            done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    order: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> int:
        client = i % clients
        address = f"198.18.{client // 250}.{client % 250 + 1}"
        name = target if client % 2 == 0 else f"nobody{urllib.parse.quote(str(i))}"
        status = _attempt(url, address, name)
        with lock:
            order.append(status)
        return status

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        statuses = list(pool.map(one, range(attempts)))
    seconds = time.perf_counter() - started
    done.set()
    watcher.join(timeout=10)
    counts = Counter(str(s) for s in statuses)
    first_429 = next((i for i, s in enumerate(order) if s == 429), None)
    queue_ms = [ms for _, ms in queue_results] or [0.0]
    return FloodResult(
        attempts=attempts,
        clients=clients,
        seconds=round(seconds, 2),
        statuses=dict(sorted(counts.items())),
        share_429=round(counts.get("429", 0) / attempts, 3),
        first_429_after=first_429,
        rss_before_mb=round(rss_before, 1),
        rss_peak_sampled_mb=round(max(samples or [rss_before]), 1),
        rss_peak_hwm_mb=round(rss_mb(pid, "VmHWM"), 1),
        queue_requests=len(queue_results),
        queue_ok=sum(1 for s, _ in queue_results if s == 200),
        queue_ms_median=round(statistics.median(queue_ms), 1),
        queue_ms_max=round(max(queue_ms), 1),
        signins_total=signins_total(url),
    )
