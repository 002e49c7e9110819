"""docker-compose.yml, checked by structure (tests/containers/compose_check.py runs it under podman-compose)."""

from __future__ import annotations

from typing import Any

import yaml

from tests.deploy.tools import DEPLOY, ROOT

PIPELINE = ("detector", "dispatcher", "trainer", "beat", "intake", "ingestor", "reconciler", "monitor", "review")
ENTRYPOINTS = {name: f"services.{name}" for name in PIPELINE} | {"reconciler": "services.ingestor.reconciler"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_services_of_the_local_stack_plus_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert set(services) == {*PIPELINE, "bootstrap", "redis", "moto", "prometheus", "grafana"}


def test_pipeline_services_share_one_hardened_image() -> None:
    services = compose()["services"]
    images = set()
    targets = {"trainer": "trainer", "moto": "local"}
    for name in (*PIPELINE, "bootstrap", "moto"):
        service = services[name]
        target = targets.get(name, "runtime")
        assert service["build"]["target"] == target, name
        assert service["image"].split(":")[0] == {"runtime": "hitl-pipeline"}.get(target, f"hitl-pipeline-{target}")
        if target == "runtime":
            images.add(service["image"])
        assert service["build"]["dockerfile"] == "Dockerfile"
        assert service["build"]["context"] == "."
        assert service["ulimits"] == {"nofile": 4096, "nproc": 4096}, name
        assert service["read_only"] is True, name
        assert any(str(t).startswith("/tmp") for t in service["tmpfs"]), name
        assert service["user"].split(":")[0] not in ("0", "root"), name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    assert len(images) == 1
    for name in PIPELINE:
        service = services[name]
        assert service["command"] == ["python", "-m", ENTRYPOINTS[name]], name
        env = service["environment"]
        assert env["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
        assert env["AWS_ENDPOINT_URL"] == "http://moto:5000"
        assert env["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"] == "http://review:8080"
        assert "healthcheck" in service, name
    for name in ("detector", "dispatcher", "reconciler"):
        assert int(services[name]["stop_grace_period"].rstrip("s")) > 150
    assert int(services["trainer"]["stop_grace_period"].rstrip("s")) > 3700


def test_dependencies_and_mounts_resolve() -> None:
    services = compose()["services"]
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for dependency in depends:
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)
    assert services["prometheus"]["image"].split(":")[1] != "latest"
    assert services["grafana"]["image"].split(":")[1] != "latest"
    for name in ("redis", "prometheus"):  # built locally from Debian's packages
        build = services[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).exists(), name
    assert services["grafana"]["profiles"] == ["grafana"], "image-only: started where it can be pulled"
    for name, secret in compose()["secrets"].items():
        assert secret["file"].startswith("./.run/"), (name, "generated, never committed")


def test_redis_appends_every_write_and_fsyncs_every_second() -> None:
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])


def test_prometheus_scrapes_every_compose_service() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "hitl")
    targets = {c["labels"]["app"]: c["targets"][0] for c in job["static_configs"]}
    assert set(targets) == set(PIPELINE)
    for app, address in targets.items():
        host, port = address.split(":")
        assert host == app
        assert port == ("8080" if app == "review" else "9100")


def test_bootstrap_runs_once_before_the_pipeline() -> None:
    services = compose()["services"]
    bootstrap = services["bootstrap"]
    assert bootstrap["command"] == ["hitl", "stack", "bootstrap"]
    assert bootstrap["restart"] == "on-failure"
    assert set(bootstrap["depends_on"]) == {"redis", "moto"}
    for name in PIPELINE:
        assert services[name]["depends_on"]["bootstrap"] == {"condition": "service_completed_successfully"}, name


def test_environment_names_are_settings() -> None:
    from hitl.settings import Settings

    known = {f"HITL_{name.upper()}" for name in Settings.model_fields} | {"HITL_HEARTBEAT_FILE", "HITL_READY_FILE"}
    for name, service in compose()["services"].items():
        unknown = {k for k in service.get("environment") or {} if k.startswith("HITL_")} - known
        assert not unknown, (name, sorted(unknown))
