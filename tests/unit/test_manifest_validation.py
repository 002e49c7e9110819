"""Every Rekognition Custom Labels manifest rule, one failing line at a time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hitl.domain.manifest import classification_line, detection_line, parse_line
from hitl.domain.manifest_validation import (
    DatasetRejected,
    ImageInfo,
    split_overlap,
    validate_manifest,
)

CMAP = {"0": "face", "1": "patch"}


def det(
    name: str = "a",
    boxes: list[tuple[str, tuple[float, float, float, float]]] | None = None,
    w: int = 640,
    h: int = 480,
) -> dict[str, Any]:
    boxes = [("face", (10, 10, 50, 50))] if boxes is None else boxes
    return detection_line(f"s3://bkt/img/{name}.png", w, h, boxes, CMAP).to_dict()


def cls(name: str, label: str) -> dict[str, Any]:
    return classification_line(f"s3://bkt/img/{name}.png", 0 if label == "a" else 1, label).to_dict()


def good(n: int) -> list[dict[str, Any]]:
    return [det(f"ok{i}") for i in range(n)]


def rules_of(line: Any, images: Any = None) -> list[str]:
    """Rules broken by one line placed among 9 good lines (so the budget holds)."""
    report = validate_manifest([*good(9), line], images)
    return [e.rule for e in report.errors if e.line == 10]


def test_valid_manifest_is_accepted() -> None:
    report = validate_manifest(good(5))
    assert report.accepted
    assert report.valid_lines == (0, 1, 2, 3, 4)
    assert report.label_counts == {"face": 5}
    assert "accepted" in report.summary()


def test_json_rule() -> None:
    assert rules_of("{not json") == ["json"]
    assert rules_of("[1, 2]") == ["json"]


def test_source_ref_rule() -> None:
    line = det()
    line["source-ref"] = "https://example.com/a.png"
    assert rules_of(line) == ["source-ref"]


def test_line_format_rule() -> None:
    line = det()
    del line["bounding-box"]["annotations"]
    assert rules_of(line) == ["line-format"]
    assert rules_of({"source-ref": "s3://bkt/img/x.png"}) == ["line-format"]


def test_single_bucket_rule() -> None:
    line = det("other")
    line["source-ref"] = "s3://another/img/x.png"
    assert rules_of(line) == ["single-bucket"]


def test_image_format_rule() -> None:
    line = det()
    line["source-ref"] = "s3://bkt/img/a.gif"
    assert rules_of(line) == ["image-format"]
    assert rules_of(det("b"), {"s3://bkt/img/b.png": ImageInfo(640, 480, "webp", 1000)}) == ["image-format"]


def test_image_size_and_aspect_rules() -> None:
    assert rules_of(det("s", w=63, h=480, boxes=[])) == ["image-size"]
    assert rules_of(det("s", w=5000, h=480, boxes=[])) == ["image-size"]
    assert "aspect-ratio" in rules_of(det("s", w=4000, h=150, boxes=[]))


def test_image_bytes_rule() -> None:
    info = {"s3://bkt/img/big.png": ImageInfo(640, 480, "png", 16 * 1024 * 1024)}
    assert rules_of(det("big"), info) == ["image-bytes"]


def test_image_size_mismatch_and_unreadable_rules() -> None:
    info = {"s3://bkt/img/m.png": ImageInfo(800, 600, "png", 100)}
    assert rules_of(det("m"), info) == ["image-size-mismatch"]
    assert rules_of(det("missing"), lambda ref: None) == ["image-readable"]


def test_box_count_rule() -> None:
    boxes = [("face", (float(i * 12), 0.0, 10.0, 10.0)) for i in range(51)]
    assert rules_of(det("many", boxes=boxes, w=1000, h=480)) == ["box-count"]


def test_box_inside_image_rule() -> None:
    assert rules_of(det("out", boxes=[("face", (600, 10, 50, 50))])) == ["box-inside-image"]
    assert rules_of(det("neg", boxes=[("face", (-1, 10, 50, 50))])) == ["box-inside-image"]


def test_box_min_size_rule() -> None:
    # A 4000-px-wide image shrinks 3.125× to 1280 px: a 3-px-wide box becomes < 1 px.
    assert rules_of(det("tiny", boxes=[("face", (10, 10, 3, 40))], w=4000, h=1000)) == ["box-min-size"]
    assert rules_of(det("fine", boxes=[("face", (10, 10, 4, 40))], w=4000, h=1000)) == []


def test_class_map_rule() -> None:
    line = det()
    line["bounding-box"]["annotations"][0]["class_id"] = 7
    assert "class-map" in rules_of(line)


def test_object_confidence_rule() -> None:
    line = det()
    line["bounding-box-metadata"]["objects"] = []
    assert rules_of(line) == ["object-confidence"]


def test_duplicate_image_rule() -> None:
    assert rules_of(det("ok0")) == ["duplicate-image"]


def test_errors_carry_line_numbers_and_rule_names() -> None:
    report = validate_manifest([*good(9), "{bad"])
    (error,) = report.errors
    assert (error.line, error.rule) == (10, "json")
    assert str(error).startswith("line 10: [json]")


def test_invalid_budget_counts_all_rules_together() -> None:
    out = det("o", boxes=[("face", (600, 10, 50, 50))])
    lines: list[Any] = [*good(8), "{bad", out]  # 2 of 10: at the budget, accepted
    report = validate_manifest(lines)
    assert report.accepted
    assert report.invalid_fraction == pytest.approx(0.2)
    assert len(report.select(lines)) == 8
    lines = [*good(7), "{bad", out, "{bad2"]  # 3 of 10: rejected
    report = validate_manifest(lines)
    assert not report.accepted
    assert [e.rule for e in report.dataset_errors] == ["invalid-budget"]
    assert "REJECTED" in report.summary()
    assert "json: 2" in report.summary()


def test_label_count_rules() -> None:
    report = validate_manifest([cls("a1", "a"), cls("a2", "a")])
    assert [e.rule for e in report.dataset_errors] == ["label-count"]
    assert validate_manifest([cls("a1", "a"), cls("b1", "b")]).accepted
    report = validate_manifest([det("e", boxes=[])])
    assert [e.rule for e in report.dataset_errors] == ["label-count"]


def test_empty_and_mixed_datasets() -> None:
    assert [e.rule for e in validate_manifest(["{bad"]).dataset_errors] == ["empty"]
    report = validate_manifest([det("d"), cls("a1", "a"), cls("b1", "b")], max_invalid_fraction=1.0)
    assert "mixed-task-types" in [e.rule for e in report.dataset_errors]


def test_train_test_overlap() -> None:
    train = [parse_line(det("x")), parse_line(det("y"))]
    test = [parse_line(det("y"))]
    (error,) = split_overlap(train, test)
    assert error.rule == "train-test-overlap"
    assert split_overlap(train, [parse_line(det("z"))]) == []


def test_dataset_rejected_message_is_the_summary() -> None:
    report = validate_manifest(["{bad"])
    exc = DatasetRejected(report)
    assert str(exc) == report.summary()
    assert "[empty]" in str(exc)


def test_accepts_json_text_lines() -> None:
    assert validate_manifest([json.dumps(x) for x in good(3)]).accepted
