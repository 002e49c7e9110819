"""The chaos run's load: distinct images, their truth for the simulated reviewers, and the three
entry points (the ``hitl submit`` CLI, the Python client, S3 uploads under the upload prefix).

Each submitter retries what failed, as an upstream system would, until the pipeline accepts the
image; it records what was accepted, by image id, independently of the pipeline's own state.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.chaos.poison_detector import POISON_MARK

HITL = str(Path(sys.executable).parent / "hitl")
IMAGE_SIZE = (96, 72)
TRUTH_BOX = {"left": 12, "top": 10, "width": 40, "height": 30}
LABEL = "object"
ENTRY_POINTS = ("cli", "client", "upload")


def image_bytes(seed: int, index: int, poison: bool = False) -> bytes:
    pixels = np.random.default_rng([seed, index]).integers(0, 255, (IMAGE_SIZE[1], IMAGE_SIZE[0], 3), dtype=np.uint8)
    info = PngInfo()
    if poison:
        info.add_text("chaos", POISON_MARK.decode())
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def image_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Item:
    index: int
    entry: str
    data: bytes
    poison: bool = False

    @property
    def image_id(self) -> str:
        return image_id(self.data)

    @property
    def name(self) -> str:
        return f"chaos-{self.index:05d}.png"


def plan(seed: int, images: int, poison: int) -> list[Item]:
    """``images`` items spread over the three entry points; ``poison`` of them kill their worker
    (one through the client, one through an S3 upload, ...)."""
    rng = random.Random(seed)
    items = [Item(i, ENTRY_POINTS[i % 3], image_bytes(seed, i)) for i in range(images - poison)]
    for n in range(poison):
        index = images - poison + n
        entry = ("client", "upload", "cli")[n % 3]
        items.insert(
            rng.randrange(len(items) // 4, len(items)), Item(index, entry, image_bytes(seed, index, True), True)
        )
    return items


def truth_line(source_ref: str) -> dict[str, Any]:
    return {
        "source-ref": source_ref,
        "bounding-box": {
            "annotations": [{"class_id": 0, **TRUTH_BOX}],
            "image_size": [{"width": IMAGE_SIZE[0], "height": IMAGE_SIZE[1], "depth": 3}],
        },
        "bounding-box-metadata": {"class-map": {"0": LABEL}, "type": "groundtruth/object-detection"},
    }


@dataclass
class Accepted:
    """What the pipeline accepted, as the submitters saw it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: dict[str, str] = field(default_factory=dict)  # image id -> entry point
    uris: dict[str, str] = field(default_factory=dict)  # image id -> where its bytes are
    at: list[float] = field(default_factory=list)
    retries: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, item_id: str, entry: str, uri: str) -> None:
        with self.lock:
            if item_id not in self.ids:
                self.ids[item_id] = entry
                self.uris[item_id] = uri
                self.at.append(time.time())

    def failed(self, what: str) -> None:
        with self.lock:
            self.retries += 1
            if len(self.errors) < 50:
                self.errors.append(what[-300:])


class Submitters:
    """Three threads, one per entry point, each pacing its share of the items over ``seconds``."""

    def __init__(self, items: list[Item], env: dict[str, str], bucket: str, work_dir: Path, cli_batch: int) -> None:
        self.items = items
        self.env = env
        self.bucket = bucket
        self.work_dir = work_dir
        self.cli_batch = cli_batch
        self.accepted = Accepted()
        self.threads: list[threading.Thread] = []
        self.stop = threading.Event()

    def start(self, seconds: float) -> None:
        per_entry = {e: [i for i in self.items if i.entry == e] for e in ENTRY_POINTS}
        runners: dict[str, Callable[[list[Item], float], None]] = {
            "cli": self._run_cli,
            "client": self._run_client,
            "upload": self._run_uploads,
        }
        for entry, items in per_entry.items():
            thread = threading.Thread(target=runners[entry], args=(items, seconds), name=f"submit-{entry}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def _pace(self, started: float, done: int, total: int, seconds: float) -> None:
        due = started + seconds * done / max(1, total)
        delay = due - time.monotonic()
        if delay > 0:
            self.stop.wait(delay)

    def _retry(self, what: str, attempt: Callable[[], bool]) -> None:
        """Until accepted: an upstream system keeps its image until the pipeline took it."""
        for n in range(200):
            try:
                if attempt():
                    return
            except Exception as exc:
                self.accepted.failed(f"{what}: {type(exc).__name__}: {exc}")
            else:
                self.accepted.failed(f"{what}: not accepted")
            time.sleep(min(5.0, 0.5 * (n + 1)))
        self.accepted.failed(f"{what}: gave up")

    # --- the `hitl submit` CLI, in batches of files ---------------------------------------------------
    def _run_cli(self, items: list[Item], seconds: float) -> None:
        started = time.monotonic()
        batches = [items[i : i + self.cli_batch] for i in range(0, len(items), self.cli_batch)]
        for n, batch in enumerate(batches):
            self._pace(started, n, len(batches), seconds)
            folder = self.work_dir / f"cli-{n:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for item in batch:
                (folder / item.name).write_bytes(item.data)
            pending = {item.image_id: item for item in batch}

            def attempt(folder: Path = folder, pending: dict[str, Item] = pending) -> bool:
                result = subprocess.run(
                    [HITL, "submit", str(folder), "--json"],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                if result.returncode not in (0, 1):
                    raise RuntimeError(f"exit {result.returncode}: {result.stderr[-300:]}")
                for row in json.loads(result.stdout):
                    if row["outcome"] in ("queued", "duplicate") and row["image_id"] in pending:
                        self.accepted.add(row["image_id"], "cli", row["uri"])
                        pending.pop(row["image_id"])
                # Only what is still pending is submitted again.
                for path in folder.iterdir():
                    if image_id(path.read_bytes()) not in pending:
                        path.unlink()
                return not pending

            self._retry(f"cli batch {n}", attempt)

    # --- the Python client ---------------------------------------------------------------------------
    def _run_client(self, items: list[Item], seconds: float) -> None:
        from hitl.submit import Client

        client = Client()
        started = time.monotonic()
        for n, item in enumerate(items):
            self._pace(started, n, len(items), seconds)

            def attempt(item: Item = item) -> bool:
                result = client.submit_bytes(item.data, item.name, source="chaos-client")
                if result.outcome in ("queued", "duplicate") and result.image_id and result.uri:
                    self.accepted.add(result.image_id, "client", result.uri)
                    return True
                return False

            self._retry(f"client {item.name}", attempt)

    # --- S3 uploads under the upload prefix (S3 notification -> SQS -> intake) ------------------------
    def _run_uploads(self, items: list[Item], seconds: float) -> None:
        from hitl import aws
        from hitl.settings import get_settings

        prefix = get_settings().uploads_prefix
        started = time.monotonic()
        for n, item in enumerate(items):
            self._pace(started, n, len(items), seconds)
            key = f"{prefix}chaos/{item.name}"

            def attempt(item: Item = item, key: str = key) -> bool:
                aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=item.data)
                # Accepted once S3 holds it: from here on the pipeline owns it.
                self.accepted.add(item.image_id, "upload", f"s3://{self.bucket}/{key}")
                return True

            self._retry(f"upload {item.name}", attempt)
