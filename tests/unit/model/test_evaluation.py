"""Metric math: IoU matching, assumed thresholds, AP50, micro/macro averages."""

from __future__ import annotations

import pytest

from hitl.domain.records import PixelBox, Prediction
from hitl.model.evaluation import box_iou, evaluate_predictions


def box(left: float, top: float, size: float = 10) -> PixelBox:
    return PixelBox(left=left, top=top, width=size, height=size)


def pred(label: str, conf: float, b: PixelBox | None = None) -> Prediction:
    return Prediction(label=label, confidence=conf, box=b)


def test_box_iou() -> None:
    assert box_iou(box(0, 0), box(0, 0)) == 1.0
    assert box_iou(box(0, 0), box(5, 0)) == pytest.approx(50 / 150)
    assert box_iou(box(0, 0), box(20, 20)) == 0.0


def test_matching_at_iou_half_and_assumed_threshold() -> None:
    truths = [[("face", box(0, 0))], [("face", box(50, 50))]]
    preds = [
        [pred("face", 90, box(1, 1)), pred("face", 80, box(0, 0))],  # second one is a duplicate → FP
        [pred("face", 70, box(50, 50)), pred("face", 20, box(200, 200))],
    ]
    report = evaluate_predictions(truths, preds)
    face = report.labels["face"]
    # Best F1: keep 90 and 70 (two TP) and the 80 duplicate (FP) → P 2/3, R 1.
    assert face.threshold == 70
    assert (face.tp, face.fp, face.fn) == (2, 1, 0)
    assert face.f1 == pytest.approx(0.8)
    assert face.ap50 == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # all-point interpolation


def test_shifted_box_below_half_iou_is_a_miss() -> None:
    report = evaluate_predictions([[("face", box(0, 0))]], [[pred("face", 99, box(6, 0))]])
    assert report.labels["face"].tp == 0
    assert report.f1 == 0.0


def test_given_thresholds_are_applied() -> None:
    truths = [[("face", box(0, 0))]]
    preds = [[pred("face", 40, box(0, 0))]]
    assert evaluate_predictions(truths, preds).f1 == 1.0
    report = evaluate_predictions(truths, preds, thresholds={"face": 50.0})
    assert report.f1 == 0.0
    assert report.labels["face"].fn == 1


def test_image_labels_micro_macro_and_top1() -> None:
    truths = [[("cat", None)], [("dog", None)], [("dog", None)]]
    preds = [
        [pred("cat", 90), pred("dog", 10)],
        [pred("dog", 60), pred("cat", 40)],
        [pred("cat", 55), pred("dog", 45)],
    ]
    report = evaluate_predictions(truths, preds, ["cat", "dog"])
    assert report.top1_macro_f1 == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert report.labels["dog"].threshold == 45
    assert report.labels["dog"].recall == 1.0
    assert report.labels["cat"].threshold == 90
    assert report.labels["cat"].precision == 1.0
    assert report.f1 == 1.0
    assert report.macro_f1 == 1.0


def test_label_without_predictions() -> None:
    report = evaluate_predictions([[("face", box(0, 0))]], [[]], ["face"])
    face = report.labels["face"]
    assert (face.f1, face.ap50, face.fn) == (0.0, 0.0, 1)


def test_report_round_trips_through_dict() -> None:
    report = evaluate_predictions([[("face", box(0, 0))]], [[pred("face", 90, box(0, 0))]])
    from hitl.model.evaluation import EvaluationReport

    assert EvaluationReport.from_dict(report.to_dict()) == report
