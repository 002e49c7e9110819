"""Sign-in flood against the review service: peak memory, share of 429 answers, and whether a
signed-in reviewer is still served during the flood.

Starts a private redis-server and one review service process (defaults: 2 password checks at once,
5 free failures per address and per account, then exponential backoff), signs a reviewer in, then
sends 500 sign-ins with wrong passwords from 40 concurrent clients (40 addresses, half of them
guessing at one real account). Writes ``bench/results/security.json``.
Run: ``python bench/bench_security.py`` (``--attempts``/``--clients`` to change the flood).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.login_flood import flood  # noqa: E402
from hitl.review import reviewers  # noqa: E402
from hitl.stack import procs  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RSS_LIMIT_MB = 300


def signed_in(url: str, name: str, password: str) -> httpx.Client:
    import re

    client = httpx.Client(base_url=url, timeout=60)
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    response = client.post("/login", data={"csrf_token": token.group(1), "username": name, "password": password})
    if response.status_code != 303:
        raise RuntimeError(f"sign-in as {name} failed: {response.status_code}")
    return client


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python bench/bench_security.py",
        description=(__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--attempts", type=int, default=500, help="sign-ins with wrong passwords (default 500)")
    parser.add_argument("--clients", type=int, default=40, help="concurrent clients, one address each (default 40)")
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="hitl-bench-security-"))
    group = procs.ProcessGroup(run_dir / "procs")
    try:
        redis_port = procs.free_port()
        server = shutil.which("redis-server") or "redis-server"
        group.start("redis", [server, "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                              "--appendonly", "no", "--dir", str(run_dir)])
        procs.wait_until(lambda: procs.port_open(redis_port), 15, "redis")
        passwords = reviewers.generate(run_dir / "reviewers.json", run_dir / "passwords.json", ["alice", "bob"])
        port = procs.free_port()
        env = {
            **os.environ,
            "HITL_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "HITL_KEY_PREFIX": "bench-security",
            "HITL_REVIEW_PORT": str(port),
            "HITL_REVIEW_REVIEWERS_FILE": str(run_dir / "reviewers.json"),
            "HITL_REVIEW_SESSION_SECRET": "bench-only-secret",
            "HITL_REVIEW_FORWARDED_ALLOW_IPS": "127.0.0.1",
            "HITL_LOG_LEVEL": "WARNING",
        }
        pid = group.start("review", [procs.venv_bin("python"), "-m", "services.review"], env)
        url = f"http://127.0.0.1:{port}"
        procs.wait_until(lambda: procs.http_ok(f"{url}/healthz"), 60, "review service")
        reviewer = signed_in(url, "bob", passwords["bob"])
        result = flood(url, pid, reviewer, attempts=args.attempts, clients=args.clients)
    finally:
        group.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
    document = {
        "benchmark": "review service sign-in flood",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": {"review_login_concurrency": 2, "review_login_waiting": 32, "review_signin_free_failures": 5,
                     "review_signin_backoff_seconds": 2.0},
        "rss_limit_mb": RSS_LIMIT_MB,
        "within_limit": result.rss_peak_hwm_mb < RSS_LIMIT_MB,
        **result.as_dict(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "security.json").write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
