"""Several reviewers, one dataset line: per-box support and the consensus kept in the line (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from hitl.domain.consolidation import consolidate, consolidate_boxes_with_support
from hitl.domain.conversion import classification_line, detection_line, parse_answer
from hitl.domain.manifest_validation import validate_manifest


def box(label: str, left: int, top: int, w: int = 40, h: int = 30) -> dict[str, Any]:
    return {"label": label, "left": left, "top": top, "width": w, "height": h}


def answer(*boxes: dict[str, Any]) -> Any:
    return parse_answer(
        {
            "answerContent": {
                "annotatedResult": {"boundingBoxes": list(boxes), "inputImageProperties": {"width": 160, "height": 120}}
            },
            "submissionTime": "2024-01-01T00:00:00.000Z",
        }
    )


def test_each_kept_box_carries_the_share_of_reviewers_behind_it() -> None:
    boxes, agreement, support = consolidate_boxes_with_support(
        [[box("a", 10, 10), box("b", 100, 60)], [box("a", 12, 10)], [box("a", 11, 12), box("b", 101, 61)]]
    )
    assert boxes == [box("a", 11, 10), box("b", 100, 60)]  # medians (two values: their mean, rounded)
    assert support == [1.0, pytest.approx(2 / 3)]
    assert agreement == pytest.approx(2 / 3)


def test_majority_box_line_records_the_disagreement() -> None:
    merged = consolidate([answer(box("a", 2, 2)), answer(box("a", 40, 30)), answer(box("a", 44, 34))])
    assert merged.boxes == [box("a", 42, 32)]
    assert merged.box_support == [pytest.approx(2 / 3)]
    line = detection_line(
        "s3://b/i.png", "det-x", merged.boxes, (160, 120), {"0": "a"}, merged.submission_time,
        confidences=merged.box_support, consensus={"workers": merged.workers, "agreement": merged.agreement},
    )
    metadata = line["bounding-box-metadata"]
    assert metadata["objects"] == [{"confidence": 0.667}]
    assert metadata["consensus"]["workers"] == 3
    assert metadata["consensus"]["agreement"] == pytest.approx(2 / 3)
    assert validate_manifest([line]).errors == ()  # still a valid Ground Truth line


def test_one_reviewer_lines_are_unchanged() -> None:
    merged = consolidate([answer(box("a", 2, 2))])
    assert merged.box_support == [1.0]
    line = detection_line("s3://b/i.png", "det-x", merged.boxes, (160, 120), {"0": "a"}, None,
                          confidences=merged.box_support)
    assert line == detection_line("s3://b/i.png", "det-x", merged.boxes, (160, 120), {"0": "a"}, None)
    assert "consensus" not in line["bounding-box-metadata"]
    assert line["bounding-box-metadata"]["objects"] == [{"confidence": 1}]


def test_majority_class_line_carries_its_share() -> None:
    votes = [parse_answer({"answerContent": {"category": {"label": x}}}) for x in ("cat", "dog", "cat")]
    merged = consolidate(votes)
    line = classification_line("s3://b/i.png", "det-x", "cat", {"0": "cat", "1": "dog"}, None,
                               confidence=merged.label_support, consensus={"workers": 3, "agreement": 0.667})
    assert line["label-metadata"]["confidence"] == 0.667
    assert line["label-metadata"]["consensus"] == {"workers": 3, "agreement": 0.667}
