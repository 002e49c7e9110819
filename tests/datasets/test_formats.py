"""Every dataset format written and read back: same images, labels exact, boxes within 1 px."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hitl.datasets.formats import FORMATS, LabelledImage, read, write
from tests.datasets.objects import scene


def _images(tmp_path: Path, count: int = 6) -> list[LabelledImage]:
    (tmp_path / "images").mkdir(parents=True)
    images = []
    for i in range(count):
        s = scene(i, seed=3, labels=("ring", "tile") if i % 2 else ("ring",))
        (tmp_path / "images" / f"{s.name}.png").write_bytes(s.png)
        images.append(LabelledImage(f"{s.name}.png", 320, 240, [(label, box) for label, box in s.boxes]))
    return images


def _same(a: list[LabelledImage], b: list[LabelledImage]) -> float:
    """Largest coordinate difference; asserts names and labels are exactly equal."""
    by_name = {x.name.rsplit("/", 1)[-1]: x for x in b}
    assert sorted(by_name) == sorted(x.name for x in a)
    worst = 0.0
    for image in a:
        other = by_name[image.name]
        assert (other.width, other.height) == (image.width, image.height)
        assert sorted(label for label, _ in other.boxes) == sorted(label for label, _ in image.boxes)
        for (label, box), (label2, box2) in zip(sorted(image.boxes), sorted(other.boxes), strict=True):
            assert label == label2
            worst = max(worst, *(abs(p - q) for p, q in zip(box, box2, strict=True)))
    return worst


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_within_one_pixel(tmp_path: Path, fmt: str) -> None:
    images = _images(tmp_path)
    write(images, tmp_path, fmt)  # type: ignore[arg-type]
    result = read(tmp_path, fmt)  # type: ignore[arg-type]
    assert result.errors == []
    assert _same(images, result.images) <= 1.0


def test_bad_entries_are_reported_by_rule(tmp_path: Path) -> None:
    images = _images(tmp_path, 3)
    write(images, tmp_path, "yolo")
    (tmp_path / "labels" / "missing-image.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "labels" / f"{images[0].name[:-4]}.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    result = read(tmp_path, "yolo")
    assert sorted(e.rule for e in result.errors) == ["class-id", "image-missing"]
    assert len(result.images) == 2

    tasks = [{"data": {"image": "images/x.png"}, "annotations": []}, {"nodata": 1}]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    ls = read(tmp_path, "labelstudio")
    assert [e.rule for e in ls.errors] == ["labelstudio-format", "labelstudio-format"]
