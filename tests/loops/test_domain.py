"""Pure domain logic: loop names, event parsing (both shapes), matching, consolidation, statistics, merge."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hitl.domain.a2i_events import parse_event
from hitl.domain.audit_stats import AuditCounts, wilson
from hitl.domain.consolidation import consolidate, consolidate_boxes, consolidate_labels
from hitl.domain.conversion import parse_answer
from hitl.domain.manifest_validation import validate_manifest
from hitl.domain.matching import LabelledBox, iou, match_boxes, match_labels
from hitl.domain.merge import check_manifest, merge_manifest, to_coco
from hitl.domain.records import detection_id_for
from hitl.domain.s3events import MalformedMessage
from hitl.loops.names import LOOP_NAME_RE, loop_name_for

AWS_EVENT = {
    "version": "0",
    "id": "12345678-1111-2222-3333-12345EXAMPLE",
    "detail-type": "SageMaker A2I HumanLoop Status Change",
    "source": "aws.sagemaker",
    "account": "111111111111",
    "time": "2019-11-14T17:49:25Z",
    "region": "us-east-1",
    "resources": ["arn:aws:sagemaker:us-east-1:111111111111:human-loop/humanloop-nov-14-1"],
    "detail": {
        "creationTime": "2019-11-14T17:37:36.740Z",
        "failureCode": None,
        "failureReason": None,
        "flowDefinitionArn": "arn:aws:sagemaker:us-east-1:111111111111:flow-definition/flowdef-nov-12",
        "humanLoopArn": "arn:aws:sagemaker:us-east-1:111111111111:human-loop/humanloop-nov-14-1",
        "humanLoopName": "humanloop-nov-14-1",
        "humanLoopOutput": {
            "outputS3Uri": "s3://output-bucket/flowdef-nov-12/2019/11/14/17/37/36/humanloop-nov-14-1/output.json"
        },
        "humanLoopStatus": "Completed",
    },
}


def _moto_variant(event: dict[str, Any]) -> dict[str, Any]:
    moto: dict[str, Any] = json.loads(json.dumps(event))
    del moto["account"]
    moto["resources"] = []
    moto["source"] = "hitl.review"
    moto["detail"]["failureCode"] = ""
    moto["detail"]["failureReason"] = ""
    return moto


# --- names --------------------------------------------------------------------------------------------
def test_loop_names_are_valid_deterministic_and_distinct():
    det = detection_id_for("ab" * 32)
    assert loop_name_for(det) == det == loop_name_for(det)
    assert loop_name_for(det, 1) == f"{det}-r1"
    for odd in ("DET_Upper Case!", "x" * 100, "--a--", "é", "a" * 63):
        for attempt in (0, 1):
            name = loop_name_for(odd, attempt)
            assert LOOP_NAME_RE.fullmatch(name), name
            assert len(name) <= 63
    assert loop_name_for("a_b") != loop_name_for("a-b")


# --- events -----------------------------------------------------------------------------------------------
def test_aws_and_moto_event_shapes_parse_to_the_same_detail():
    aws = parse_event(json.dumps(AWS_EVENT))
    moto = parse_event(json.dumps(_moto_variant(AWS_EVENT)))
    assert aws.account == "111111111111"
    assert moto.account is None
    assert moto.resources == []
    assert aws.detail == moto.detail
    assert moto.detail.failure_code is None
    assert moto.loop_name == "humanloop-nov-14-1"
    assert moto.detail.output_uri.endswith("/output.json")


def test_failed_expired_event_with_empty_strings():
    raw = _moto_variant(AWS_EVENT)
    raw["detail"].update(
        humanLoopStatus="Failed", failureCode="Expired", failureReason="not answered in time", humanLoopOutput=""
    )
    event = parse_event(json.dumps(raw))
    assert event.detail.expired
    assert event.detail.output_uri is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not_json"),
        ("[1]", "not_an_object"),
        (json.dumps({"detail-type": "Other"}), "unexpected_detail_type"),
        (
            json.dumps({"detail-type": "SageMaker A2I HumanLoop Status Change", "detail": {"humanLoopName": "x"}}),
            "invalid_detail",
        ),
    ],
)
def test_malformed_messages_have_countable_reasons(body, reason):
    with pytest.raises(MalformedMessage) as caught:
        parse_event(body)
    assert caught.value.reason == reason


# --- matching ------------------------------------------------------------------------------------------------
def test_iou_and_greedy_matching():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    predicted = [LabelledBox("a", (0, 0, 10, 10)), LabelledBox("a", (50, 50, 10, 10)), LabelledBox("b", (0, 0, 10, 10))]
    truth = [LabelledBox("a", (1, 1, 10, 10)), LabelledBox("b", (30, 30, 10, 10))]
    result = match_boxes(predicted, truth)
    assert (result.tp, result.fp, result.fn) == (1, 2, 1)
    assert (match_labels("x", "x").tp, match_labels("x", None).fp, match_labels(None, "y").fn) == (1, 1, 1)
    assert match_labels(None, None).tp == match_labels(None, None).fp == 0


# --- consolidation --------------------------------------------------------------------------------------------------
def _box(label: str, left: float, top: float, w: float = 10, h: float = 10) -> dict[str, Any]:
    return {"label": label, "left": left, "top": top, "width": w, "height": h}


def test_box_clusters_keep_majority_and_report_agreement():
    workers = [
        [_box("a", 0, 0), _box("a", 100, 100)],
        [_box("a", 1, 1)],
        [_box("a", 2, 0), _box("b", 50, 50)],
    ]
    boxes, agreement = consolidate_boxes(workers)
    assert boxes == [{"label": "a", "left": 1, "top": 0, "width": 10, "height": 10}]
    assert agreement == pytest.approx(1 / 3)  # only the second reviewer drew exactly the consensus


def test_single_answer_passes_through_unchanged():
    answer = parse_answer(
        {
            "answerContent": {
                "annotatedResult": {
                    "boundingBoxes": [_box("a", 3, 4, 5.5, 6)],
                    "inputImageProperties": {"width": 64, "height": 64},
                }
            },
            "submissionTime": "2024-01-01T00:00:00.000Z",
        }
    )
    merged = consolidate([answer])
    assert merged.boxes == [_box("a", 3, 4, 5.5, 6)]
    assert merged.agreement == 1.0
    assert merged.image_size == (64, 64)


def test_majority_label_and_ties():
    assert consolidate_labels(["cat", "dog", "cat"]) == ("cat", pytest.approx(2 / 3))
    assert consolidate_labels(["dog", "cat"])[0] == "dog"
    assert consolidate_labels([None, None, "cat"])[0] is None
    answers = [parse_answer({"answerContent": {"category": {"label": x}}}) for x in ("a", "None of the Above", "a")]
    merged = consolidate(answers)
    assert merged.kind == "class"
    assert merged.label == "a"
    assert merged.agreement == pytest.approx(2 / 3)


# --- statistics -----------------------------------------------------------------------------------------------------
def test_wilson_interval_known_values():
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(10, 10)
    assert high == pytest.approx(1.0)
    assert low == pytest.approx(0.7225, abs=1e-4)


def test_audit_counts_report():
    counts = AuditCounts(tp=8, fp=2, fn=4, agree=6, loops=10)
    assert counts.precision().value == pytest.approx(0.8)
    assert counts.recall().value == pytest.approx(8 / 12)
    assert counts.f1().value == pytest.approx(2 * 8 / (2 * 8 + 2 + 4))
    assert counts.agreement().value == pytest.approx(0.6)
    assert AuditCounts().precision().value is None


# --- merge ---------------------------------------------------------------------------------------------
def _det_line(ref: str, boxes: list[tuple[int, int]], created: str, attribute: str = "bounding-box") -> dict[str, Any]:
    return {
        "source-ref": ref,
        attribute: {
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
            "annotations": [{"class_id": 0, "left": b[0], "top": b[1], "width": 20, "height": 20} for b in boxes],
        },
        f"{attribute}-metadata": {
            "objects": [{"confidence": 1} for _ in boxes],
            "class-map": {"0": "face"},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": created,
            "job-name": "a2i/x",
        },
    }


def test_merge_replaces_existing_appends_new_once_and_validates():
    existing = [_det_line("s3://b/1.png", [(0, 0)], "2020", "gt"), _det_line("s3://b/2.png", [(5, 5)], "2020", "gt")]
    answers = [
        _det_line("s3://b/1.png", [(10, 10), (40, 40)], "2024-01-01"),
        _det_line("s3://b/3.png", [(1, 1)], "2024-01-01"),
        _det_line("s3://b/3.png", [(2, 2)], "2024-01-02"),  # a later answer for the same new image wins
    ]
    merged = merge_manifest(existing, answers)
    assert [line["source-ref"] for line in merged] == ["s3://b/1.png", "s3://b/2.png", "s3://b/3.png"]
    assert [a["left"] for a in merged[0]["gt"]["annotations"]] == [10, 40]  # replaced, in the line's own attribute
    assert "bounding-box" not in merged[0]
    assert merged[1] == existing[1]
    assert merged[2]["bounding-box"]["annotations"][0]["left"] == 2
    assert check_manifest(merged) == {}
    report = validate_manifest(merged)  # the project's Rekognition rules (docs/formats.md §4)
    assert report.errors == ()
    assert report.accepted
    assert merge_manifest(merged, answers) == merged  # merging again changes nothing


def test_check_manifest_finds_broken_lines():
    bad = _det_line("s3://b/1.png", [(630, 0)], "2024")
    bad["bounding-box"]["annotations"].append({"class_id": 7, "left": 0, "top": 0, "width": 5, "height": 5})
    problems = check_manifest([bad, _det_line("s3://other/2.png", [(0, 0)], "2024")])
    assert any("outside" in p for p in problems["s3://b/1.png"])
    assert any("class_id 7" in p for p in problems["s3://b/1.png"])
    assert "*" in problems


def test_coco_export():
    lines = [_det_line("s3://b/1.png", [(0, 0), (30, 30)], "2024"), _det_line("s3://b/2.png", [], "2024")]
    coco = to_coco(lines)
    assert [i["file_name"] for i in coco["images"]] == ["s3://b/1.png", "s3://b/2.png"]
    assert coco["categories"] == [{"id": 1, "name": "face", "supercategory": "none"}]
    assert coco["annotations"][1] == {
        "id": 2,
        "image_id": 1,
        "category_id": 1,
        "bbox": [30, 30, 20, 20],
        "area": 400,
        "iscrowd": 0,
    }
