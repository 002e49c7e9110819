"""The scene generator is deterministic, its splits never share pixels, its lines are valid."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hitl.domain.manifest import parse_line
from hitl.domain.manifest_validation import validate_manifest
from hitl.scenes import digits_set, face_nonface_set, fashion_mnist_set, generate_scene, generate_scenes, sources
from hitl.scenes.targets import TARGETS, generate_target_scene, target_examples


def test_scenes_are_deterministic() -> None:
    a, b = generate_scene("train", 3), generate_scene("train", 3)
    assert np.array_equal(a.image, b.image)
    assert a.boxes == b.boxes
    assert not np.array_equal(a.image, generate_scene("train", 3, seed=1).image)


def test_splits_draw_on_disjoint_sources() -> None:
    assert not {n for n, _ in sources.backgrounds("train")} & {n for n, _ in sources.backgrounds("test")}
    train_faces = {f.tobytes() for f in sources.faces("train")}
    assert not train_faces & {f.tobytes() for f in sources.faces("test")}
    assert not {f.tobytes() for f in sources.nonfaces("train")} & {f.tobytes() for f in sources.nonfaces("test")}


def test_generated_files_are_valid_manifest_lines() -> None:
    files = generate_scenes("test", 4, source_prefix="s3://bkt/scenes/")
    lines = [line for _, line in files]
    report = validate_manifest(lines)
    assert report.accepted
    assert report.invalid_lines == 0
    png, line = files[0]
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (640, 480)
    parsed = parse_line(line)
    assert parsed.source_ref.startswith("s3://bkt/scenes/test-")
    assert all(name == "face" for name, _ in parsed.boxes())  # type: ignore[union-attr]


def test_distractors_can_be_a_second_label() -> None:
    labels = {name for i in range(10) for name, _ in generate_scene("train", i, distractor_label="patch").boxes}
    assert labels == {"face", "patch"}


def test_image_sets_have_fixed_disjoint_splits() -> None:
    train, test = face_nonface_set("train", 10), face_nonface_set("test")
    assert len(train.images) == 20
    assert len(test.images) == 60
    assert not {im.tobytes() for im in train.images} & {im.tobytes() for im in test.images}
    assert validate_manifest([line.to_dict() for _, line in train.examples("s3://bkt/x/")]).accepted


def test_fashion_mnist_set() -> None:
    train = fashion_mnist_set("train", 3, classes=("trouser", "bag"))
    test = fashion_mnist_set("test", classes=("trouser", "bag"))
    assert train.labels.count("bag") == 3
    assert len(test.images) == 200
    assert train.images[0].shape == (28, 28, 3)


def test_digits_set_has_fixed_disjoint_splits() -> None:
    train, test = digits_set("train", 10, seed=1), digits_set("test")
    assert [train.labels.count(d) for d in train.classes] == [10] * 10

    def pixels(images: list[np.ndarray]) -> list[bytes]:
        return [im.tobytes() for im in images]

    assert len(test.images) == 600
    assert pixels(test.images) == pixels(digits_set("test", seed=5).images)
    assert pixels(train.images) == pixels(digits_set("train", 10, seed=1).images)
    assert pixels(train.images) != pixels(digits_set("train", 10, seed=2).images)
    assert not {im.tobytes() for im in train.images} & {im.tobytes() for im in test.images}
    assert train.images[0].shape == (8, 8, 3)
    assert max(int(im.max()) for im in test.images) == 255
    assert validate_manifest([line.to_dict() for _, line in train.examples("s3://bkt/x/")]).accepted


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_scenes_are_deterministic_shaped_as_named_and_split(name: str) -> None:
    target = TARGETS[name]
    scenes = [generate_target_scene(target, "train", i) for i in range(6)]
    again = generate_target_scene(target, "train", 0)
    assert np.array_equal(again.image, scenes[0].image)
    assert again.boxes == scenes[0].boxes
    assert not np.array_equal(generate_target_scene(target, "test", 0).image, scenes[0].image)
    boxes = [box for scene in scenes for _, box in scene.boxes]
    assert boxes, "every target scene set holds labelled objects"
    assert {label for scene in scenes for label, _ in scene.boxes} <= set(target.labels)
    for left, top, width, height in boxes:
        assert left >= 0
        assert top >= 0
        assert left + width <= 640
        assert top + height <= 480
        if name == "small":
            assert max(width, height) <= 32
        if name == "elongated":
            assert height / width >= 3 or width / height >= 3
        if name == "large":
            assert width * height >= 0.4 * 640 * 480


def test_target_examples_make_valid_manifest_lines() -> None:
    examples = target_examples("two-labels", "test", 3)
    assert len(examples) == 3
    for image, line in examples:
        assert image.shape == (480, 640, 3)
        assert {name for name, _ in line.boxes()} <= {"sneaker", "ankle-boot"}
    assert target_examples("faces", "test", 1)[0][1].boxes()
