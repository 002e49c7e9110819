"""Redis runs with the append-only file wherever a deployment starts it (here: the k8s local overlay)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_local_cluster_redis_keeps_an_fsynced_append_only_file_on_a_volume() -> None:
    documents = list(yaml.safe_load_all((ROOT / "deploy/k8s/overlays/local/dependencies/redis.yaml").read_text()))
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] in ("everysec", "always")
    [data] = [v for v in pod["volumes"] if v["name"] == "data"]
    claim = data["persistentVolumeClaim"]["claimName"]
    assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim for d in documents)
