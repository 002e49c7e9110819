"""``hitl containers down``: which engine calls stop the stack's containers, in which order.

The engine here records its calls instead of running them (an in-process stand-in, so the order can be
read); tests/containers runs the same code against podman."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from hitl.stack import containers, local
from hitl.stack.engine import Engine


@dataclass(frozen=True)
class RecordingEngine(Engine):
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        return subprocess.CompletedProcess(list(args), 0, stdout=f"log of {args[-1]}\n", stderr="")


def test_containers_stop_in_tiers_each_tier_in_one_call(tmp_path: Path) -> None:
    folder = tmp_path / "containers"
    folder.mkdir()
    names = ["review", *local.WORKERS, "extra"]
    for name in names:
        (folder / f"{name}.cid").write_text(f"id-{name}\n")
    (folder / "empty.cid").write_text("")
    engine = RecordingEngine("podman")

    stopped = containers.down(tmp_path, engine)

    stops = [call for call in engine.calls if call[0] == "stop"]
    assert [set(call[3:]) for call in stops] == [{f"id-{n}" for n in local.WORKERS}, {"id-review"}, {"id-extra"}]
    assert all(call[1:3] == ("--time", str(containers.STOP_GRACE_SECONDS)) for call in stops)
    removed = [set(call[2:]) for call in engine.calls if call[0] == "rm"]
    assert removed == [set(call[3:]) for call in stops]
    assert sorted(stopped) == sorted(names)
    assert not list(folder.glob("*.cid"))
    for name in names:
        assert (tmp_path / "logs" / f"{name}.log").read_text() == f"log of id-{name}\n"
