"""The kustomize overlays: they build, core objects validate strictly, CRD objects are well-formed,
and the pipeline's operational rules hold (security, probes, resources, scaling, identities)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import AWS_VALUES, K8S, OVERLAYS, by_kind, is_core, load_docs
from tests.deploy.tools import run, tool

SERVICES = ("detector", "dispatcher", "trainer", "beat", "intake", "ingestor", "reconciler", "monitor", "review")
ENTRYPOINTS = {name: f"services.{name}" for name in SERVICES} | {"reconciler": "services.ingestor.reconciler"}
CELERY_WORKERS = {"detector": 150, "dispatcher": 150, "reconciler": 150, "trainer": 3700}  # task time limits (s)
SCALED = {
    "detector": ("redis", "detect"),
    "dispatcher": ("redis", "dispatch"),
    "intake": ("aws-sqs-queue", "hitl-uploads"),
    "ingestor": ("aws-sqs-queue", "hitl-a2i-events"),
}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")


def app_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, deployment["metadata"]["name"]
    container: dict[str, Any] = containers[0]
    return container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_with_every_service(objects: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = objects[overlay]
    deployments = by_kind(docs, "Deployment")
    assert set(SERVICES) <= set(deployments)
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"hitl"}
    for name in SERVICES:
        assert name in by_kind(docs, "ServiceAccount"), name
        assert name in by_kind(docs, "PodDisruptionBudget"), name
    assert "review" in by_kind(docs, "Service")
    assert "review" in by_kind(docs, "Ingress")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_validate_strictly(rendered: dict[str, str], overlay: str, tmp_path: Any) -> None:
    core = [doc for doc in load_docs(rendered[overlay]) if is_core(doc)]
    assert len(core) > 20
    path = tmp_path / f"{overlay}-core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_strict_validation_rejects_an_unknown_field(tmp_path: Any) -> None:
    """The check above is worth something: a misspelt field fails it."""
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dataa": {"a": "b"}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", str(path)])
    assert result.returncode != 0


def test_aws_overlay_placeholders_all_have_example_values(built: dict[str, str], iam_render: Any) -> None:
    used = set(PLACEHOLDER.findall(built["aws"]))
    assert used, "the aws overlay is expected to carry ${Placeholders}"
    assert used <= set(iam_render.read_env(AWS_VALUES)), used - set(iam_render.read_env(AWS_VALUES))
    assert not PLACEHOLDER.findall(built["local"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down(objects: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    for name, deployment in by_kind(objects[overlay], "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["runAsUser"] >= 10000, name
            for key in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][key]), name
            assert {"livenessProbe", "readinessProbe"} <= set(container), name
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            assert "/tmp" in mounts or name == "redis", name
            for volume in mounts.values():
                kinds = {"emptyDir", "secret"} | ({"persistentVolumeClaim"} if name == "redis" else set())
                # Only Redis keeps data (its append-only file) on a claim; everything else is scratch or a secret.
                assert kinds & set(volumes[volume]), (name, volume)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_run_their_entrypoint_with_scratch_metrics_and_probes(
    objects: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    deployments = by_kind(objects[overlay], "Deployment")
    config = next(iter(by_kind(objects[overlay], "ConfigMap").values()))["data"]
    assert config["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"
    assert config["PYTHONDONTWRITEBYTECODE"] == "1"
    assert config["HITL_METRICS_PORT"] == "9100"
    for name in SERVICES:
        deployment = deployments[name]
        pod = deployment["spec"]["template"]["spec"]
        container = app_container(deployment)
        assert container["command"] == ["python", "-m", ENTRYPOINTS[name]]
        assert pod["serviceAccountName"] == name
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp/prometheus"]]
        assert "emptyDir" in volumes[mounts["/tmp"]]
        refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
        assert refs
        assert all(ref in by_kind(objects[overlay], "ConfigMap") for ref in refs)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if name == "review":
            assert ports == {"http": 8080}
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        else:
            assert ports == {"metrics": 9100}
            assert container["livenessProbe"]["exec"]["command"] == ["python", "-m", "hitl.health", "--max-age", "60"]
            assert container["readinessProbe"]["exec"]["command"][:3] == ["python", "-m", "hitl.health"]
        if name in CELERY_WORKERS:
            assert pod["terminationGracePeriodSeconds"] > CELERY_WORKERS[name], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_and_strategies(objects: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    deployments = by_kind(objects[overlay], "Deployment")
    for singleton in ("beat", "trainer"):
        assert deployments[singleton]["spec"]["replicas"] == 1
        assert deployments[singleton]["spec"]["strategy"]["type"] == "Recreate"
    assert deployments["monitor"]["spec"]["replicas"] == 1
    assert deployments["reconciler"]["spec"]["replicas"] == 1
    for name in SCALED:  # KEDA owns these replica counts
        assert "replicas" not in deployments[name]["spec"], name
    trainer = app_container(deployments["trainer"])["resources"]["limits"]
    assert trainer["cpu"] == "2000m"
    assert trainer["memory"] == "4Gi"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_referenced_secret_and_service_account_exists(
    objects: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = objects[overlay]
    secrets = set(by_kind(docs, "Secret"))
    # Created outside the repository on AWS (deploy/README.md).
    external = {"hitl-redis", "hitl-review-metrics"} if overlay == "aws" else set()
    for name, deployment in by_kind(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets | external, (name, ref)
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, (name, source)
        if "serviceAccountName" in pod:
            assert pod["serviceAccountName"] in by_kind(docs, "ServiceAccount")


def test_aws_service_accounts_carry_irsa_roles(objects: dict[str, list[dict[str, Any]]]) -> None:
    accounts = by_kind(objects["aws"], "ServiceAccount")
    for name in SERVICES:
        arn = accounts[name]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert re.fullmatch(rf"arn:aws:iam::\d{{12}}:role/hitl-{name}", arn), arn
        assert accounts[name]["automountServiceAccountToken"] is False


def test_aws_overlay_uses_real_endpoints_and_tls(objects: dict[str, list[dict[str, Any]]]) -> None:
    config = next(iter(by_kind(objects["aws"], "ConfigMap").values()))["data"]
    assert not any(key.startswith("AWS_ENDPOINT_URL") for key in config)
    ingress = by_kind(objects["aws"], "Ingress")["review"]
    assert ingress["spec"]["tls"][0]["hosts"] == [ingress["spec"]["rules"][0]["host"]]
    local = next(iter(by_kind(objects["local"], "ConfigMap").values()))["data"]
    assert local["AWS_ENDPOINT_URL"] == "http://moto:5000"
    assert local["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"] == "http://review:8080"
    assert {"redis", "moto"} <= set(by_kind(objects["local"], "Deployment"))
    assert not {"redis", "moto"} & set(by_kind(objects["aws"], "Deployment"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_cover_every_pod(
    objects: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    policies = by_kind(objects[overlay], "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    redis_egress = policies["redis-egress"]["spec"]["egress"][0]
    assert redis_egress.get("to"), "each overlay pins where Redis is"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_objects_are_well_formed(objects: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = objects[overlay]
    scaled = by_kind(docs, "ScaledObject")
    auths = by_kind(docs, "TriggerAuthentication")
    secrets = set(by_kind(docs, "Secret"))
    deployments = by_kind(docs, "Deployment")
    assert set(scaled) == set(SCALED)
    for name, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        assert spec["scaleTargetRef"]["name"] == name
        assert name in deployments
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        kind, queue = SCALED[name]
        assert trigger["type"] == kind
        meta = trigger["metadata"]
        assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
        if kind == "redis":
            assert meta["listName"] == queue
            assert meta["listLength"].isdigit()
        else:
            assert meta["queueURL"].endswith(f"/{queue}")
            assert meta["queueLength"].isdigit()
            assert meta["awsRegion"]
        assert trigger["authenticationRef"]["name"] in auths
    for name, auth in auths.items():
        assert auth["apiVersion"] == "keda.sh/v1alpha1"
        spec = auth["spec"]
        assert "secretTargetRef" in spec or "podIdentity" in spec, name
        for ref in spec.get("secretTargetRef", []):
            assert {"parameter", "name", "key"} <= set(ref)
            assert ref["name"] in secrets or (overlay == "aws" and ref["name"] == "hitl-redis"), ref
    if overlay == "aws":
        assert auths["hitl-aws"]["spec"]["podIdentity"]["provider"] == "aws"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_monitor_scrapes_every_service(objects: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    docs = objects[overlay]
    (monitor,) = by_kind(docs, "PodMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    endpoint_ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    assert all(e.get("path", "/metrics") == "/metrics" for e in monitor["spec"]["podMetricsEndpoints"])
    for name in SERVICES:
        template = by_kind(docs, "Deployment")[name]["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        assert ports & endpoint_ports, name
    for name in ("redis", "moto"):
        if name in by_kind(docs, "Deployment"):
            labels = by_kind(docs, "Deployment")[name]["spec"]["template"]["metadata"]["labels"]
            assert not selector.items() <= labels.items(), f"{name} is a dependency, not scraped as the pipeline"


def test_prometheus_rule_matches_the_rules_file(objects: dict[str, list[dict[str, Any]]]) -> None:
    rules = yaml.safe_load((K8S.parent / "prometheus" / "rules" / "hitl-alerts.yml").read_text())
    for overlay in OVERLAYS:
        (rule,) = by_kind(objects[overlay], "PrometheusRule").values()
        assert rule["spec"] == rules, "deploy/k8s/base/prometheusrule.yaml is out of step with deploy/prometheus/rules"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_bootstrap_job_runs_the_idempotent_bootstrap(objects: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    jobs = by_kind(objects[overlay], "Job")
    assert set(jobs) == {"hitl-bootstrap"}
    job = jobs["hitl-bootstrap"]
    pod = job["spec"]["template"]["spec"]
    container = app_container(job)
    assert container["command"] == ["hitl", "stack", "bootstrap"]
    assert pod["serviceAccountName"] == "bootstrap"
    assert pod["restartPolicy"] == "OnFailure"
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert any("configMapRef" in e for e in container["envFrom"])
    if overlay == "local":
        assert any("secretRef" in e for e in container["envFrom"]), "moto's dummy credentials"
    else:
        account = by_kind(objects[overlay], "ServiceAccount")["bootstrap"]
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/hitl-bootstrap")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_names_are_settings(objects: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    """Every HITL_* variable a pod gets is a field of hitl.settings.Settings (or read by hitl.health)."""
    from hitl.settings import Settings

    known = {f"HITL_{name.upper()}" for name in Settings.model_fields} | {"HITL_HEARTBEAT_FILE", "HITL_READY_FILE"}
    docs = objects[overlay]
    names = {key for cm in by_kind(docs, "ConfigMap").values() for key in cm.get("data", {})}
    for kind in ("Deployment", "Job"):
        for workload in by_kind(docs, kind).values():
            for container in workload["spec"]["template"]["spec"]["containers"]:
                names |= {e["name"] for e in container.get("env", [])}
    unknown = {n for n in names if n.startswith("HITL_")} - known
    assert not unknown, f"not settings: {sorted(unknown)}"
