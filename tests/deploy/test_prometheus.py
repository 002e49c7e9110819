"""Prometheus configuration and alert rules: promtool checks them and runs their unit tests."""

from __future__ import annotations

from typing import Any

import yaml

from tests.deploy.catalog import allowed_labels, known_metrics
from tests.deploy.promql import usage
from tests.deploy.tools import DEPLOY, run, tool

PROM = DEPLOY / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
REQUIRED_ALERTS = {
    "HitlTaskFailureRateHigh",  # failure rate
    "HitlBacklogGrowing",  # backlog growing
    "HitlDeadLettersPresent",  # dead letters present
    "HitlNoLiveWorker",  # no live worker
    "HitlAuditPrecisionLow",  # audit precision below a set level
    "HitlHumanLoopsExpiring",  # loops expiring
    "HitlTrainingFailing",  # training failing
}


def all_rules() -> list[dict[str, Any]]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    assert RULES
    result = run([tool("promtool"), "check", "rules", *map(str, RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    tests = sorted((PROM / "tests").glob("*.yml"))
    assert tests
    result = run([tool("promtool"), "test", "rules", *map(str, tests)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_scrape_config_is_valid() -> None:
    result = run([tool("promtool"), "check", "config", "prometheus.yml"], cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_scrape_config_structure() -> None:
    """Debian's Prometheus is built without Kubernetes discovery, so promtool cannot load this file here."""
    config = yaml.safe_load((PROM / "prometheus-kubernetes.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"hitl", "hitl-review"}
    for name, port in (("hitl", "metrics"), ("hitl-review", "http")):
        job = jobs[name]
        assert job["kubernetes_sd_configs"][0]["role"] == "pod"
        relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
        assert relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_part_of",)]["regex"] == "hitl-pipeline"
        assert relabel[("__meta_kubernetes_pod_container_port_name",)]["regex"] == port
        assert relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_name",)]["target_label"] == "app"
    # The review service's /metrics needs its token off loopback: the file is the mounted Secret.
    assert jobs["hitl-review"]["authorization"]["credentials_file"].endswith("/hitl-review-metrics/token")


def test_required_alerts_exist_with_severity_and_text() -> None:
    rules = all_rules()
    alerts = {rule["alert"]: rule for rule in rules if "alert" in rule}
    assert set(alerts) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(alerts)
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("page", "warning"), name
        assert all(rule["annotations"].get(key) for key in ("summary", "description")), name


def test_every_alert_is_unit_tested() -> None:
    tested = {
        case["alertname"]
        for path in (PROM / "tests").glob("*.yml")
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in all_rules() if "alert" in rule}
    assert alerts <= tested, f"alerts without a firing test: {alerts - tested}"


def test_rules_use_only_exported_metrics_and_labels() -> None:
    catalog = known_metrics()
    problems = []
    for rule in all_rules():
        found = usage(rule["expr"])
        for metric, labels in found.selectors:
            if metric not in catalog and metric != "up":
                problems.append(f"{rule.get('alert') or rule.get('record')}: unknown metric {metric}")
                continue
            allowed = allowed_labels(metric, catalog)
            if allowed is not None and not labels <= allowed:
                problems.append(f"{rule.get('alert')}: {metric} has no label {sorted(labels - allowed)}")
    assert not problems, "\n".join(problems)
