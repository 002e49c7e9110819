"""``hitl models list|promote|rollback``, ``hitl dlq`` and ``hitl params get`` against moto's server and
the real Redis, through the command line parser (typer's runner, in this process)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest
import redis as redis_lib
from typer.testing import CliRunner

from hitl import aws
from hitl.celery_app import QUEUES
from hitl.cli.main import app
from hitl.model.artifact import ModelArtifact
from hitl.model.registry import ModelRegistry
from hitl.model.training import evaluate_artifact, train
from hitl.params import SPECS, ParameterStore
from hitl.scenes import face_nonface_set
from hitl.settings import Settings, get_settings

pytestmark = pytest.mark.integration

MANIFEST = '{"source-ref": "s3://hitl-test/a.png"}\n'


def last_line(output: str) -> str:
    """The command's own answer: its last line (the registry's structured log lines come first)."""
    return output.strip().splitlines()[-1]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli_settings(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[Settings]:
    """The CLI's own settings (from HITL_* variables), on a models prefix, SSM path and Redis key
    prefix of this test only."""
    name = request.node.name.replace("_", "-")[:40]
    monkeypatch.setenv("HITL_MODELS_PREFIX", f"models-{name}/")
    monkeypatch.setenv("HITL_PARAMS_PATH", f"/{name}/")
    monkeypatch.setenv("HITL_KEY_PREFIX", f"cli-{name}")
    get_settings.cache_clear()
    aws.reset_clients()
    s3 = aws.client("s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=settings.bucket)
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def artifact() -> ModelArtifact:
    model = train(face_nonface_set("train", 3).examples())
    return model.with_evaluation(evaluate_artifact(model, face_nonface_set("test", 4).examples()))


def test_models_list_promote_and_rollback(runner: CliRunner, cli_settings: Settings, artifact: ModelArtifact) -> None:
    registry = ModelRegistry(cli_settings)
    v1 = registry.publish(artifact, MANIFEST).version
    registry.promote(v1)
    v2 = registry.publish(artifact, MANIFEST).version
    assert (v1, v2) == ("v0001", "v0002")

    listed = runner.invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["version"], r["status"], r["serving"], r["promoted"], r["parent"]) for r in rows] == [
        ("v0001", "serving", True, True, None),
        ("v0002", "candidate", False, False, "v0001"),
    ]
    assert artifact.evaluation is not None
    assert rows[0]["f1"] == pytest.approx(artifact.evaluation["f1"])

    text = runner.invoke(app, ["models", "list"])
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("* v0001  serving")
    assert lines[1].startswith("  v0002  candidate")
    assert "parent v0001" in lines[1]

    promoted = runner.invoke(app, ["models", "promote", "v0002", "--reason", "better on the test split"])
    assert (promoted.exit_code, last_line(promoted.stdout)) == (0, "serving v0002")
    assert registry.serving_version() == "v0002"
    assert registry.describe("v0001").status == "retired"
    assert registry.describe("v0002").history[-1]["reason"] == "better on the test split"

    unknown = runner.invoke(app, ["models", "promote", "v0099"])
    assert unknown.exit_code == 2
    assert "error:" in unknown.stderr
    assert "v0099" in unknown.stderr
    assert registry.serving_version() == "v0002", "a refused promotion changes nothing"

    back = runner.invoke(app, ["models", "rollback", "--reason", "F1 dropped"])
    assert (back.exit_code, last_line(back.stdout)) == (0, "serving v0001")
    assert registry.serving_version() == "v0001"
    assert registry.describe("v0002").status == "rejected"

    nothing_left = runner.invoke(app, ["models", "rollback"])
    assert nothing_left.exit_code == 2
    assert "error:" in nothing_left.stderr
    assert registry.serving_version() == "v0001"


def test_models_list_of_an_empty_registry(runner: CliRunner, cli_settings: Settings) -> None:
    listed = runner.invoke(app, ["models", "list", "--json"])
    assert (listed.exit_code, json.loads(listed.stdout)) == (0, [])


def test_dlq_lists_dead_lettered_tasks_per_queue(runner: CliRunner, cli_settings: Settings) -> None:
    redis = redis_lib.Redis.from_url(cli_settings.redis_url)
    entries = [
        {"task": "hitl.detect", "kwargs": {"image_id": f"img{i}"}, "deliveries": 3 + i} for i in range(2)
    ]
    key = cli_settings.key("dlq", "detect")
    redis.delete(*(cli_settings.key("dlq", q) for q in QUEUES))
    try:
        for entry in entries:
            redis.rpush(key, json.dumps(entry))
        redis.rpush(cli_settings.key("dlq", "ingest"), json.dumps({"task": "hitl.ingest.x", "deliveries": 4}))

        as_json = runner.invoke(app, ["dlq", "--json"])
        assert as_json.exit_code == 0, as_json.output
        data = json.loads(as_json.stdout)
        detect_letters = [
            {"queue": "detect", "kind": "redis", "task": "hitl.detect", "reason": "max_deliveries",
             "ids": {"image_id": f"img{i}"}}
            for i in range(2)
        ]
        ingest_letter = {"queue": "ingest", "kind": "redis", "task": "hitl.ingest.x", "reason": "max_deliveries",
                         "ids": {}}
        key_of = lambda letter: json.dumps(letter, sort_keys=True)  # noqa: E731
        assert sorted(data["dead_letters"], key=key_of) == sorted([*detect_letters, ingest_letter], key=key_of)
        assert data["redriven_so_far"] == {}

        text = runner.invoke(app, ["dlq"])
        assert text.exit_code == 0
        lines = text.stdout.splitlines()
        assert sorted(lines[:3]) == [
            "redis:detect             hitl.detect (max_deliveries) image_id=img0",
            "redis:detect             hitl.detect (max_deliveries) image_id=img1",
            "redis:ingest             hitl.ingest.x (max_deliveries)",
        ]
        assert lines[3:] == ["`hitl dlq redrive [--queue Q] [--reason R] [--dry-run]` sends them again"]
    finally:
        redis.delete(*(cli_settings.key("dlq", q) for q in QUEUES))


def test_params_get_one_all_and_unknown(runner: CliRunner, cli_settings: Settings) -> None:
    # Nothing stored yet: the defaults.
    one = runner.invoke(app, ["params", "get", "Human-Sampling-Interval"])
    assert (one.exit_code, one.stdout) == (0, "1000\n")

    ParameterStore(cli_settings).set("Human-Sampling-Interval", "25")
    changed = runner.invoke(app, ["params", "get", "Human-Sampling-Interval"])
    assert (changed.exit_code, changed.stdout) == (0, "25\n")

    everything = runner.invoke(app, ["params", "get"])
    assert everything.exit_code == 0
    expected = {name: spec.default for name, spec in SPECS.items()} | {"Human-Sampling-Interval": "25"}
    assert everything.stdout.splitlines() == [f"{name}={expected[name]}" for name in sorted(SPECS)]

    unknown = runner.invoke(app, ["params", "get", "No-Such-Parameter"])
    assert unknown.exit_code == 2
    assert "unknown parameter" in unknown.stderr
    assert unknown.stdout == ""
