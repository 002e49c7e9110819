"""A new user's first day, scripted on the real stack (``hitl stack up`` = ``make up``: its own Redis
with an append-only file, moto's server, the review service, every worker, the embedded model).

The user's object class is the tests' own "ring" (tests/datasets/objects.py), not the demo's faces:
1. a fresh stack; 30 images submitted: none dead-lettered, all routed ``cold_start``;
2. the user gives the review flow their label before the first answer; a simulated reviewer
   answers; v1 trains on a held-back split of those labels and is promoted automatically;
3. 30 more images are detected by v1;
4. ``make down`` then ``make up``: records, labels, models and the operator page are all still
   there, and nothing is rejected ``not_found``;
5. the dataset exported (every format) and imported into a second fresh stack: the same labels,
   boxes within 1 px.
The closing figures (round trip per format, first answer → v1 serving) are printed and written to
``<tmp>/new-user-figures.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from hitl.datasets.formats import FORMATS, LabelledImage, read
from hitl.domain.images import content_id
from hitl.domain.manifest import detection_line
from hitl.review.portal_client import PortalClient
from hitl.stack import procs
from hitl.stack.local import read_env_file
from tests.datasets.objects import ObjectScene, scene
from tests.integration.conftest import _free_port_range, wait_until
from tests.loops.test_loops_integration import loop_started

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]
HITL = str(Path(sys.executable).parent / "hitl")
LABEL = "ring"
BATCH = 30


@dataclass
class UserStack:
    """One local stack in its own run directory, driven through the CLI as a user does."""

    run_dir: Path
    env: dict[str, str]

    def up(self) -> str:
        argv = [HITL, "stack", "up"]
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in (self.run_dir / "logs").glob("*.log"))
            self.down()
            raise RuntimeError(f"stack up failed: {result.stderr[-3000:]}\n{logs}")
        self.env.update(read_env_file(self.run_dir / "stack.env"))
        return result.stderr

    def down(self) -> None:
        subprocess.run([HITL, "stack", "down"], env=self.env, capture_output=True, timeout=300, check=False)

    def cli(self, *args: str, ok: tuple[int, ...] = (0,), timeout: float = 300) -> str:
        argv = [HITL, *args]
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        assert result.returncode in ok, f"hitl {' '.join(args)} → {result.returncode}: {result.stderr[-2000:]}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    @property
    def redis(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.env["HITL_REDIS_URL"], decode_responses=True)

    def image(self, image_id: str) -> dict[str, str]:
        return dict(self.redis.hgetall(f"{self.env['HITL_KEY_PREFIX']}:image:{image_id}"))  # type: ignore[arg-type]

    def log(self, name: str) -> str:
        return (self.run_dir / "logs" / f"{name}.log").read_text(errors="replace")


def new_stack(run_dir: Path, bucket: str) -> UserStack:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HITL_", "AWS_"))},
        "HITL_RUN_DIR": str(run_dir),
        # Nothing answers there yet: the stack starts its own redis-server, persisted under run_dir.
        "HITL_REDIS_URL": f"redis://127.0.0.1:{procs.free_port()}/0",
        "HITL_STACK_MOTO_PORT": str(procs.free_port()),
        "HITL_REVIEW_PORT": str(procs.free_port()),
        "HITL_STACK_METRICS_BASE_PORT": str(_free_port_range(10)),
        "HITL_PARAMS_CACHE_SECONDS": "1",
        "HITL_MODEL_CACHE_SECONDS": "2",
        "HITL_BUCKET": bucket,
        "HITL_KEY_PREFIX": "newuser",
        "HITL_DETECT_BACKEND": "local",
        "HITL_WORKER_CONCURRENCY": "1",
    }
    return UserStack(run_dir, env)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserStack]:
    stack = new_stack(tmp_path_factory.mktemp("first-stack"), "new-user-images")
    stack.up()
    yield stack
    stack.down()


def _write(folder: Path, scenes: list[ObjectScene]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for s in scenes:
        (folder / f"{s.name}.png").write_bytes(s.png)


def _truth(path: Path, scenes: list[ObjectScene], bucket: str) -> None:
    with path.open("w") as handle:
        for s in scenes:
            ref = f"s3://{bucket}/images/{content_id(s.png)}.png"
            handle.write(detection_line(ref, 320, 240, s.boxes, {"0": LABEL}).to_json() + "\n")


def _operator_page(stack: UserStack) -> str:
    passwords = json.loads(Path(stack.env["HITL_REVIEW_PASSWORD_FILE"]).read_text())
    client = PortalClient(stack.env["HITL_REVIEW_URL"])
    client.sign_in("alice", passwords["alice"])
    _, body, _ = client._request("GET", "/operator")
    return body.decode()


def _round_trip(images: list[LabelledImage], again: list[LabelledImage]) -> float:
    """Largest box coordinate difference between two readings; labels must match exactly."""
    by_name = {Path(x.name).name: x for x in again}
    assert sorted(by_name) == sorted(Path(x.name).name for x in images)
    worst = 0.0
    for image in images:
        other = by_name[Path(image.name).name]
        assert sorted(label for label, _ in other.boxes) == sorted(label for label, _ in image.boxes)
        for (_, a), (_, b) in zip(sorted(image.boxes), sorted(other.boxes), strict=True):
            worst = max(worst, *(abs(p - q) for p, q in zip(a, b, strict=True)))
    return worst


def test_a_new_users_first_day(first: UserStack, tmp_path: Path) -> None:
    figures: dict[str, Any] = {}
    bucket = first.env["HITL_BUCKET"]
    # --- 1. a fresh stack: cold start --------------------------------------------------------------
    assert "cold start" in first.cli("status")
    assert "no model versions yet" in first.cli("models", "list")
    first.cli("params", "set", "Minimum-Untrained-Images", str(BATCH))
    batch1 = [scene(i, seed=1) for i in range(BATCH)]
    _write(tmp_path / "batch1", batch1)
    submitted = first.json("submit", str(tmp_path / "batch1"))
    ids = [r["image_id"] for r in submitted]
    assert [r["outcome"] for r in submitted] == ["queued"] * BATCH

    def all_waiting_for_a_human() -> bool:
        entries = [first.image(i) for i in ids]
        assert not [e for e in entries if e.get("state") == "dead_lettered"], "dead-lettered in cold start"
        return all(e.get("loop_status") == "InProgress" for e in entries)

    wait_until(all_waiting_for_a_human, 300, "30 cold-start loops")
    assert {first.image(i)["route"] for i in ids} == {"cold_start"}
    assert {first.image(i)["model_version"] for i in ids} == {"none"}
    assert "label it from scratch" in first.cli("status", ids[0])

    # --- 2. the user's own label, then answers; v1 trains and is promoted by itself -------------------
    flow = json.loads(first.cli("review", "flows", "update", "hitl-local-review", "--label", LABEL, "--json"))
    assert flow["Labels"] == [LABEL]
    _truth(tmp_path / "truth.jsonl", batch1, bucket)
    first_answer = time.monotonic()
    review = first.cli("review", "--auto", "--truth", str(tmp_path / "truth.jsonl"), "--reviewer", "bob",
                       "--until-idle", "5")
    assert review.count("answered ") >= BATCH

    def serving() -> str | None:
        rows = first.json("models", "list")
        return next((r["version"] for r in rows if r["serving"]), None)

    v1 = wait_until(serving, 900, "v1 promoted")
    figures["first_answer_to_v1_serving_seconds"] = round(time.monotonic() - first_answer, 1)
    rows = first.json("models", "list")
    assert [r["version"] for r in rows] == [v1]
    assert rows[0]["f1"] >= 0.8  # Minimum-F1-Score, on the held-back split
    # The held-back split was carved from these labels and kept as the test manifest.
    s3_test = first.cli("dataset", "export", "--format", "manifest", "--out", str(tmp_path / "all"))
    assert f"{BATCH} image(s)" in s3_test

    # --- 3. 30 more images, detected by v1 ----------------------------------------------------------
    batch2 = [scene(i, seed=2) for i in range(BATCH)]
    _write(tmp_path / "batch2", batch2)
    ids2 = [r["image_id"] for r in first.json("submit", str(tmp_path / "batch2"))]
    def settled(image_id: str) -> bool:
        entry = first.image(image_id)
        return entry.get("state") == "detected" and (entry.get("route") == "none" or loop_started(entry))

    wait_until(lambda: all(settled(i) for i in ids2), 600, "batch 2 detected, its review loops started")
    assert {first.image(i)["model_version"] for i in ids2} == {v1}
    assert "cold_start" not in {first.image(i)["route"] for i in ids2}
    assert "cold start" not in first.cli("status")

    # --- 4. make down, make up: everything is still there ---------------------------------------------
    before = {
        "status": {i: first.image(i) for i in ids + ids2},
        "models": first.json("models", "list"),
        "labels": first.redis.scard("newuser:dataset:human-labels:examples"),
        "flow": json.loads(first.cli("review", "flows", "describe", "hitl-local-review", "--json"))["Labels"],
    }
    page = _operator_page(first)
    loop_names = [first.image(i)["loop_name"] for i in ids[:5]]
    assert all(name in page for name in loop_names)
    first.down()
    notes = first.up()
    assert "restored from the last `make down`" in notes
    assert {i: first.image(i) for i in ids + ids2} == before["status"]
    assert first.json("models", "list") == before["models"]
    assert first.redis.scard("newuser:dataset:human-labels:examples") == before["labels"] == BATCH
    assert json.loads(first.cli("review", "flows", "describe", "hitl-local-review", "--json"))["Labels"] == before[
        "flow"
    ]
    assert all(name in _operator_page(first) for name in loop_names)
    record = first.json("status", ids2[0])["record"]
    assert record["model_version"] == v1
    # The restored images are readable: resubmitting one is a duplicate, and nothing is not_found.
    assert first.json("submit", str(tmp_path / "batch2" / f"{batch2[0].name}.png"))[0]["outcome"] == "duplicate"
    assert "not_found" not in first.json("rejections")["counts"]

    # --- 5. export every format; import into a second fresh stack: the same labels -------------------
    exports = {}
    for fmt in FORMATS:
        out = tmp_path / "export" / fmt
        first.cli("dataset", "export", "--format", fmt, "--out", str(out))
        exports[fmt] = read(out, fmt)
        assert exports[fmt].errors == []
        assert len(exports[fmt].images) == BATCH
    truth = {f"{content_id(s.png)}.png": s for s in batch1}
    worst_vs_truth = max(
        abs(p - q)
        for image in exports["coco"].images
        for (_, a), (_, b) in zip(image.boxes, truth[image.name].boxes, strict=True)
        for p, q in zip(a, b, strict=True)
    )
    assert worst_vs_truth <= 1.0

    second = new_stack(tmp_path / "second-stack", "second-user-images")
    second.up()
    try:
        round_trip: dict[str, float] = {}
        for fmt in ("yolo", "coco", "voc", "labelstudio", "manifest"):
            second.cli("dataset", "import", str(tmp_path / "export" / fmt), "--format", fmt)
            out = tmp_path / "re-export" / fmt
            second.cli("dataset", "export", "--format", fmt, "--out", str(out))
            again = read(out, fmt)
            round_trip[fmt] = _round_trip(exports[fmt].images, again.images)
            assert round_trip[fmt] <= 1.0, fmt
        figures["round_trip_max_px"] = round_trip
        # Five imports of the same 30 images: 30 labelled examples, and the flow offers the label.
        assert second.redis.scard("newuser:dataset:human-labels:examples") == BATCH
        flow2 = json.loads(second.cli("review", "flows", "describe", "hitl-local-review", "--json"))
        assert LABEL in flow2["Labels"]
    finally:
        second.down()
    (tmp_path / "new-user-figures.json").write_text(json.dumps(figures, indent=2))
    print("closing figures:", json.dumps(figures))
