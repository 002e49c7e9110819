"""Grafana dashboards: well-formed, provisioned, and every panel query parses and uses only metrics
(and labels) the pipeline exports. The live check against a scraping Prometheus reuses panel_queries()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.deploy.catalog import TARGET_LABELS, allowed_labels, known_metrics
from tests.deploy.dashboards import DASHBOARDS, dashboard_files, panel_queries, variable_queries
from tests.deploy.prom import PrometheusError, running_prometheus
from tests.deploy.promql import usage
from tests.deploy.tools import DEPLOY, run, tool

EXPECTED = {"pipeline-overview.json", "human-loops.json", "model-quality.json", "workers-queues.json"}


def test_the_four_dashboards_exist_with_unique_uids() -> None:
    files = dashboard_files()
    assert {path.name for path in files} == EXPECTED
    uids = [json.loads(path.read_text())["uid"] for path in files]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_structure(name: str) -> None:
    board = json.loads((DASHBOARDS / name).read_text())
    assert board["title"].startswith("hitl: ")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] <= grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_provisioning_points_at_the_dashboards() -> None:
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "hitl.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"]
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"
    compose = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == entry["options"]["path"]


def test_every_panel_query_uses_known_metrics_and_labels() -> None:
    catalog = known_metrics()
    queries = panel_queries()
    assert len(queries) >= 40
    every_label = set(TARGET_LABELS) | {"le"} | {label for info in catalog.values() for label in (info.labels or ())}
    problems = []
    for query in queries:
        found = usage(query.promql)
        if not found.metrics:
            problems.append(f"{query}: selects no metric")
        for metric, labels in found.selectors:
            if metric not in catalog and metric != "up":
                problems.append(f"{query}: unknown metric {metric}")
                continue
            allowed = allowed_labels(metric, catalog)
            if allowed is not None and not labels <= allowed:
                problems.append(f"{query}: {metric} has no label {sorted(labels - allowed)}")
        unknown = found.grouping_labels - every_label
        if unknown:
            problems.append(f"{query}: groups by unknown labels {sorted(unknown)}")
    for dashboard, variable, definition in variable_queries():
        metric = definition.removeprefix("label_values(").split(",")[0].strip()
        if metric not in catalog:
            problems.append(f"{dashboard} variable {variable}: unknown metric {metric}")
    assert not problems, "\n".join(problems)


def test_every_panel_query_parses_with_promtool(tmp_path: Path) -> None:
    queries = panel_queries()
    rules = {
        "groups": [
            {
                "name": "panels",
                "rules": [{"record": f"panel:query_{i}", "expr": q.promql} for i, q in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_panel_query_evaluates_in_prometheus(tmp_path: Path) -> None:
    """Prometheus (empty TSDB) accepts and evaluates each query; nothing is scraped, so results are empty
    except for constant fallbacks such as `or vector(0)`."""
    failures = []
    with running_prometheus(tmp_path / "prometheus") as prometheus:
        for query in panel_queries():
            try:
                prometheus.query(query.promql)
            except PrometheusError as exc:
                failures.append(f"{query}: {exc}")
    assert not failures, "\n".join(failures)


def test_panel_queries_helper_substitutes_grafana_variables() -> None:
    queries = panel_queries()
    assert any("$__rate_interval" in q.expr for q in queries)
    assert all("$" not in q.promql for q in queries)
    assert {q.dashboard for q in queries} == EXPECTED
