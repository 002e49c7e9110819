"""ServingModelCache: refresh interval, hot swap, failures keep the old model, thread safety."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from hitl.model.predictor import LocalPredictor
from hitl.model.registry import ModelRegistry, NoServingModel, ServingModelCache


class FakeModel:
    def __init__(self, version: str) -> None:
        self.version = version


class FakeRegistry:
    def __init__(self) -> None:
        self.serving: str | None = "v0001"
        self.reads = 0
        self.fail = False

    def serving_version(self) -> str | None:
        self.reads += 1
        if self.fail:
            raise ConnectionError("s3 down")
        return self.serving


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(
    reg: FakeRegistry, clock: Clock, loads: list[str], gate: dict[str, threading.Event] | None = None
) -> ServingModelCache:
    """A cache whose loader records loads; a version in ``gate`` loads only once its event is set."""

    def loader(version: str) -> LocalPredictor:
        if gate and version in gate:
            loading.set()
            assert gate[version].wait(5)
        loads.append(version)
        return cast(LocalPredictor, FakeModel(version))

    loading = threading.Event()
    cache = ServingModelCache(cast(ModelRegistry, reg), refresh_seconds=10, clock=clock, loader=loader)
    cache.loading = loading  # type: ignore[attr-defined]
    return cache


def test_reads_the_pointer_at_most_every_interval_and_swaps() -> None:
    reg, clock = FakeRegistry(), Clock()
    loads: list[str] = []
    cache = make(reg, clock, loads)
    assert cache.get().version == "v0001"
    reg.serving = "v0002"
    clock.now = 5
    assert cache.get().version == "v0001"
    assert reg.reads == 1
    clock.now = 10
    assert cache.get().version == "v0002"
    assert loads == ["v0001", "v0002"]
    assert reg.reads == 2


def test_registry_failure_keeps_the_loaded_model() -> None:
    reg, clock = FakeRegistry(), Clock()
    loads: list[str] = []
    cache = make(reg, clock, loads)
    cache.get()
    reg.fail, clock.now = True, 11
    assert cache.get().version == "v0001"


def test_no_serving_version() -> None:
    reg, clock = FakeRegistry(), Clock()
    reg.serving = None
    with pytest.raises(NoServingModel):
        make(reg, clock, []).get()


def test_old_model_serves_while_the_new_one_loads() -> None:
    reg, clock = FakeRegistry(), Clock()
    loads: list[str] = []
    release = threading.Event()
    cache = make(reg, clock, loads, gate={"v0002": release})
    cache.get()
    reg.serving, clock.now = "v0002", 20
    seen: list[str] = []
    refresher = threading.Thread(target=lambda: seen.append(cache.get().version))
    refresher.start()
    assert cache.loading.wait(5)  # type: ignore[attr-defined]
    # The refresher holds the lock inside the slow load; other callers neither wait nor load.
    others: list[Any] = [cache.get().version for _ in range(5)]
    assert others == ["v0001"] * 5
    release.set()
    refresher.join(5)
    assert seen == ["v0002"]
    assert cache.get().version == "v0002"
    assert loads == ["v0001", "v0002"]


def test_many_threads_load_once() -> None:
    reg, clock = FakeRegistry(), Clock()
    loads: list[str] = []
    cache = make(reg, clock, loads)
    threads = [threading.Thread(target=cache.get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == ["v0001"]
