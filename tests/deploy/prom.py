"""A real Prometheus (Debian's package) for tests: start it on a free loopback port, query it, stop it.

    with running_prometheus(tmp_path, scrape_targets={"detector": "127.0.0.1:9101"}, interval="1s") as prom:
        prom.query("up")

With no targets it runs on an empty TSDB: good for checking that queries parse and evaluate.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.tools import tool


class PrometheusError(RuntimeError):
    pass


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        request = urllib.request.Request(f"{self.url}{path}", data=query.encode(), method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; returns the result list (empty when no series match)."""
        data = self.api("/api/v1/query", query=promql)
        result = data["result"]
        return result if isinstance(result, list) else [result]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape_config(
    targets: Mapping[str, str], interval: str = "5s", rule_files: list[str] | None = None
) -> dict[str, Any]:
    """A Prometheus config scraping ``{app: host:port}`` at /metrics, labelled like the real deployments."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": rule_files or [],
        "scrape_configs": [
            {
                "job_name": "hitl",
                "static_configs": [{"targets": [address], "labels": {"app": app}} for app, address in targets.items()],
            }
        ]
        if targets
        else [],
    }


@contextmanager
def running_prometheus(
    workdir: Path,
    scrape_targets: Mapping[str, str] | None = None,
    rule_files: list[str] | None = None,
    interval: str = "5s",
) -> Iterator[Prometheus]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(scrape_targets or {}, interval=interval, rule_files=rule_files)))
    port = _free_port()
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise PrometheusError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise PrometheusError("prometheus did not become ready within 30 s")
            time.sleep(0.1)
        yield Prometheus(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
