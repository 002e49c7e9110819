"""Exact behaviour of the five core domain modules (routing, conversion, consolidation, matching, audit
statistics) at their boundaries: every comparison, default and tie-break is pinned, so a changed
operator or constant fails a test (``make mutation`` checks this)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from hitl.domain import audit_stats, conversion, matching
from hitl.domain.audit_stats import AuditCounts, Estimate, proportion, wilson
from hitl.domain.consolidation import Consolidated, consolidate, consolidate_boxes, consolidate_labels
from hitl.domain.conversion import (
    AnswerError,
    HumanAnswer,
    class_map_for,
    classification_line,
    convert_a2i_to_augmented_manifest,
    detection_line,
    extend_class_map,
    human_answers,
    input_labels,
    parse_answer,
    task_object,
)
from hitl.domain.matching import LabelledBox, MatchResult, iou, match_boxes, match_labels
from hitl.domain.records import PixelBox, Prediction
from hitl.domain.routing import RoutingPolicy, is_audit_sample, route


# --- routing ------------------------------------------------------------------------------------------
def policy(**overrides: Any) -> RoutingPolicy:
    base: dict[str, Any] = {
        "review_enabled": True,
        "min_confidence": 70.0,
        "label_overrides": {},
        "sampling_enabled": True,
        "sampling_interval": 10,
    }
    return RoutingPolicy(**(base | overrides))


def pred(label: str, confidence: float) -> Prediction:
    return Prediction(label=label, confidence=confidence, box=PixelBox(left=1, top=2, width=3, height=4))


def test_threshold_is_the_override_of_the_label_else_the_minimum() -> None:
    rules = policy(label_overrides={"hat": 90})
    assert rules.threshold_for("hat") == 90.0
    assert isinstance(rules.threshold_for("hat"), float)
    assert rules.threshold_for("face") == 70.0


@pytest.mark.parametrize(
    ("sequence", "interval", "sampled"),
    [(10, 10, True), (20, 10, True), (9, 10, False), (11, 10, False), (1, 1, True), (None, 10, False),
     (10, 0, False), (0, -1, False), (5, 5, True), (4, 5, False)],
)
def test_audit_sample_every_nth(sequence: int | None, interval: int, sampled: bool) -> None:
    assert is_audit_sample(sequence, interval) is sampled


def test_the_most_confident_label_decides_against_its_own_threshold() -> None:
    rules = policy(label_overrides={"hat": 90.0, "face": 50.0})
    # The top label is the hat (85 < its 90): low confidence, although the face (60) passes its 50.
    decision = route([pred("face", 60), pred("hat", 85)], rules, sample_seq=1)
    assert decision.reasons == ["low_confidence"]
    assert decision.top_confidence == 85
    assert decision.threshold == 90.0
    assert decision.sample_seq == 1
    passed = route([pred("hat", 40), pred("face", 60)], rules, sample_seq=2)
    assert passed.reasons == []
    assert passed.threshold == 50.0
    assert passed.top_confidence == 60


def test_a_confidence_equal_to_the_threshold_is_not_low() -> None:
    assert route([pred("face", 70.0)], policy(), sample_seq=1).reasons == []
    assert route([pred("face", 69.99)], policy(), sample_seq=1).reasons == ["low_confidence"]


def test_nothing_found_is_low_confidence_against_the_minimum() -> None:
    decision = route([], policy(min_confidence=33.0), sample_seq=4)
    assert decision.reasons == ["low_confidence"]
    assert decision.threshold == 33.0
    assert decision.top_confidence is None
    assert decision.sample_seq == 4


def test_both_reasons_in_order_and_sampling_switch() -> None:
    assert route([pred("face", 10)], policy(), sample_seq=10).reasons == ["low_confidence", "audit"]
    assert route([pred("face", 99)], policy(), sample_seq=10).reasons == ["audit"]
    assert route([pred("face", 99)], policy(sampling_enabled=False), sample_seq=10).reasons == []
    assert route([pred("face", 99)], policy(), sample_seq=None).reasons == []


def test_review_disabled_routes_nothing_but_keeps_the_sequence() -> None:
    decision = route([pred("face", 1)], policy(review_enabled=False), sample_seq=10)
    assert decision.reasons == []
    assert decision.sample_seq == 10
    assert decision.top_confidence is None
    assert decision.threshold is None


def test_annotation_always_goes_to_review_with_the_top_confidence() -> None:
    decision = route([pred("face", 20), pred("face", 95)], policy(review_enabled=False), sample_seq=10, annotate=True)
    assert decision.reasons == ["annotation"]
    assert decision.top_confidence == 95
    assert decision.sample_seq is None
    assert decision.threshold is None
    empty = route([], policy(), sample_seq=3, annotate=True)
    assert (empty.reasons, empty.top_confidence, empty.sample_seq) == (["annotation"], None, None)


# --- matching -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (5, 0, 10, 10), 50 / 150),
        ((0, 0, 10, 10), (0, 5, 10, 10), 50 / 150),
        ((0, 0, 10, 10), (2, 3, 4, 5), 20 / 100),  # b inside a
        ((2, 3, 4, 5), (0, 0, 10, 10), 20 / 100),
        ((0, 0, 10, 10), (10, 0, 10, 10), 0.0),  # touching edges
        ((0, 0, 10, 10), (0, 10, 10, 10), 0.0),
        ((0, 0, 10, 10), (11, 0, 10, 10), 0.0),
        ((0, 0, 10, 10), (0, 11, 10, 10), 0.0),
        ((5, 5, 10, 10), (0, 0, 10, 10), 25 / 175),
        ((0, 0, 4, 2), (1, 0, 4, 2), 6 / 10),
    ],
)
def test_iou_values(a: matching.Box, b: matching.Box, expected: float) -> None:
    assert iou(a, b) == pytest.approx(expected)


def test_iou_of_degenerate_boxes_is_zero() -> None:
    # A zero-area union (impossible for real boxes) must not divide by zero.
    assert iou((0, 0, 1, 1), (0, 0, -1, -1)) == 0.0
    assert iou((0, 0, 2, 2), (1, 1, 2, -4)) == 0.0


def test_iou_threshold_is_one_half() -> None:
    assert matching.IOU_THRESHOLD == 0.5


def test_a_match_at_exactly_the_threshold_counts() -> None:
    # IoU of (0,0,10,10) and (0,0,10,5) is 50/100 = 0.5.
    result = match_boxes([LabelledBox("a", (0, 0, 10, 10))], [LabelledBox("a", (0, 0, 10, 5))])
    assert result.pairs == [(0, 0, 0.5)]
    below = match_boxes([LabelledBox("a", (0, 0, 10, 10))], [LabelledBox("a", (0, 0, 10, 4.9))])
    assert (below.tp, below.false_positives, below.false_negatives) == (0, [0], [0])
    custom = match_boxes([LabelledBox("a", (0, 0, 10, 10))], [LabelledBox("a", (0, 0, 10, 4))], threshold=0.4)
    assert custom.pairs == [(0, 0, pytest.approx(0.4))]


def test_greedy_matching_takes_the_best_overlap_first() -> None:
    predicted = [LabelledBox("a", (0, 0, 10, 10)), LabelledBox("a", (1, 0, 10, 10))]
    truth = [LabelledBox("a", (1, 0, 10, 10))]
    result = match_boxes(predicted, truth)
    assert result.pairs == [(1, 0, 1.0)]
    assert result.false_positives == [0]
    assert result.false_negatives == []
    # Equal overlaps: the lower indices win.
    tie = match_boxes([LabelledBox("a", (0, 0, 10, 10))] * 2, [LabelledBox("a", (0, 0, 10, 10))] * 2)
    assert tie.pairs == [(0, 0, 1.0), (1, 1, 1.0)]
    crossed = match_boxes(
        [LabelledBox("a", (0, 0, 10, 10)), LabelledBox("a", (100, 0, 10, 10))],
        [LabelledBox("a", (100, 0, 10, 10)), LabelledBox("a", (0, 0, 10, 10))],
    )
    assert crossed.pairs == [(0, 1, 1.0), (1, 0, 1.0)]
    assert (crossed.tp, crossed.fp, crossed.fn) == (2, 0, 0)


def test_one_prediction_matches_one_truth_of_its_own_label() -> None:
    predicted = [LabelledBox("a", (0, 0, 10, 10))]
    truth = [LabelledBox("a", (0, 0, 10, 10)), LabelledBox("a", (0, 0, 10, 10)), LabelledBox("b", (0, 0, 10, 10))]
    result = match_boxes(predicted, truth)
    assert result.pairs == [(0, 0, 1.0)]
    assert result.false_negatives == [1, 2]
    assert (result.tp, result.fp, result.fn) == (1, 0, 2)
    assert match_boxes([], []).pairs == []
    empty_truth = match_boxes(predicted, [])
    assert (empty_truth.false_positives, empty_truth.false_negatives) == ([0], [])


def test_label_matching() -> None:
    same = match_labels("x", "x")
    assert (same.pairs, same.false_positives, same.false_negatives) == ([(0, 0, 1.0)], [], [])
    other = match_labels("x", "y")
    assert (other.pairs, other.false_positives, other.false_negatives) == ([], [0], [0])
    missed = match_labels(None, "y")
    assert (missed.pairs, missed.false_positives, missed.false_negatives) == ([], [], [0])
    invented = match_labels("x", None)
    assert (invented.pairs, invented.false_positives, invented.false_negatives) == ([], [0], [])
    nothing = match_labels(None, None)
    assert (nothing.tp, nothing.fp, nothing.fn) == (0, 0, 0)
    assert MatchResult().pairs == MatchResult().false_positives == MatchResult().false_negatives == []


# --- audit statistics -------------------------------------------------------------------------------------
def test_z95_and_wilson_against_the_formula() -> None:
    assert pytest.approx(1.959963984540054, abs=1e-15) == audit_stats.Z95
    z = audit_stats.Z95
    for successes, trials in ((8, 10), (1, 3), (0, 5), (5, 5), (37, 50)):
        p = successes / trials
        centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
        half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials**2)) / (1 + z * z / trials)
        assert wilson(successes, trials) == (
            pytest.approx(max(0.0, centre - half), abs=1e-12),
            pytest.approx(min(1.0, centre + half), abs=1e-12),
        )
    assert wilson(1, 3) == (pytest.approx(0.0614919, abs=1e-6), pytest.approx(0.7923403, abs=1e-6))
    assert wilson(0, 5)[0] == 0.0
    assert wilson(5, 5)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(0, -2) == (0.0, 1.0)
    half = math.sqrt(0.1875) / 1.5  # p = 0.5, n = 2, z = 1: centre 0.5
    assert wilson(1, 2, z=1.0) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))


def test_proportion_and_its_dict() -> None:
    estimate = proportion(3, 4)
    assert estimate == Estimate(0.75, *wilson(3, 4), 4)
    assert estimate.as_dict() == {"value": 0.75, "ci95_low": estimate.low, "ci95_high": estimate.high, "n": 4}
    assert proportion(0, 0) == Estimate(None, 0.0, 1.0, 0)
    assert proportion(0, 2).value == 0.0


def test_audit_counts_every_measure() -> None:
    counts = AuditCounts(tp=6, fp=2, fn=4, agree=3, loops=5)
    assert counts.precision() == proportion(6, 8)
    assert counts.recall() == proportion(6, 10)
    assert counts.f1() == proportion(6, 9)  # 6 / (6 + (2 + 4) / 2)
    assert counts.agreement() == proportion(3, 5)
    assert counts.report() == {
        "loops": 5,
        "tp": 6,
        "fp": 2,
        "fn": 4,
        "precision": proportion(6, 8).as_dict(),
        "recall": proportion(6, 10).as_dict(),
        "f1": proportion(6, 9).as_dict(),
        "agreement": proportion(3, 5).as_dict(),
    }
    assert AuditCounts() == AuditCounts(0, 0, 0, 0, 0)


# --- consolidation ----------------------------------------------------------------------------------------
def box(label: str, left: float, top: float, width: float = 10, height: float = 10) -> dict[str, Any]:
    return {"label": label, "left": left, "top": top, "width": width, "height": height}


def test_no_reviewers_no_boxes() -> None:
    assert consolidate_boxes([]) == ([], 0.0)
    assert consolidate_boxes([[], []]) == ([], 1.0)


def test_a_box_needs_a_strict_majority_of_reviewers() -> None:
    two_of_four = [[box("a", 0, 0)], [box("a", 0, 0)], [], []]
    assert consolidate_boxes(two_of_four) == ([], 0.5)
    three_of_four = [[box("a", 0, 0)], [box("a", 0, 0)], [box("a", 0, 0)], []]
    assert consolidate_boxes(three_of_four) == ([box("a", 0, 0)], 0.75)


def test_merged_boxes_are_the_median_rounded_only_for_integers() -> None:
    ints = [[box("a", 0, 0, 10, 10)], [box("a", 1, 0, 10, 11)]]  # IoU 0.75: one cluster
    merged, agreement = consolidate_boxes(ints)
    assert merged == [{"label": "a", "left": 0, "top": 0, "width": 10, "height": 10}]  # round(0.5), round(10.5)
    assert all(isinstance(merged[0][k], int) for k in ("left", "top", "width", "height"))
    assert agreement == 1.0  # both reviewers' boxes are in the one kept cluster
    mixed = [[box("a", 0, 0, 10, 10)], [box("a", 1.5, 0, 10, 11)]]
    assert consolidate_boxes(mixed)[0] == [{"label": "a", "left": 0.75, "top": 0, "width": 10, "height": 10}]
    odd = [[box("a", 0, 0)], [box("a", 2, 0)], [box("a", 1, 0)]]
    assert consolidate_boxes(odd)[0] == [box("a", 1, 0)]


def test_a_single_member_cluster_keeps_its_own_box() -> None:
    own = {"label": "a", "left": 1, "top": 2, "width": 3, "height": 4, "extra": "kept"}
    assert consolidate_boxes([[own]]) == ([own], 1.0)


def test_each_box_joins_the_cluster_it_overlaps_most() -> None:
    workers = [
        [box("a", 0, 0), box("a", 6, 0)],  # two clusters
        [box("a", 5, 0)],  # IoU with (0,0) is 1/3, with (6,0) 9/11: joins the second
    ]
    merged, _ = consolidate_boxes(workers)
    assert merged == [{"label": "a", "left": 6, "top": 0, "width": 10, "height": 10}]  # round(5.5) = 6


def test_a_cluster_takes_one_box_per_reviewer_and_one_label() -> None:
    workers = [[box("a", 0, 0), box("a", 0, 0)], [box("a", 0, 0)], [box("b", 0, 0)]]
    merged, agreement = consolidate_boxes(workers)
    assert merged == [box("a", 0, 0)]
    assert agreement == pytest.approx(1 / 3)


def test_clustering_threshold_is_inclusive() -> None:
    # IoU of (0,0,10,10) and (0,0,10,5) is exactly 0.5: the same cluster.
    merged, agreement = consolidate_boxes([[box("a", 0, 0, 10, 10)], [box("a", 0, 0, 10, 5)]])
    assert len(merged) == 1
    assert agreement == 1.0
    separate, _ = consolidate_boxes([[box("a", 0, 0, 10, 10)], [box("a", 0, 0, 10, 5)]], threshold=0.51)
    assert separate == []


def test_majority_label_agreement_and_first_answered_tie_break() -> None:
    assert consolidate_labels([]) == (None, 0.0)
    assert consolidate_labels(["b", "a", "a", "b"]) == ("b", 0.5)
    assert consolidate_labels(["a", "b", "b", "a", "c"]) == ("a", 0.4)
    assert consolidate_labels(["c", "a", "b", "b"]) == ("b", 0.5)
    assert consolidate_labels([None, "a"]) == (None, 0.5)


def answer(**fields: Any) -> HumanAnswer:
    return HumanAnswer(**fields)


def test_consolidate_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no answers"):
        consolidate([])


def test_consolidate_boxes_of_the_majority_kind() -> None:
    answers = [
        answer(kind="boxes", boxes=[box("a", 0, 0)], image_size=None, submission_time="2024-01-01T00:00:02Z"),
        answer(kind="boxes", boxes=[box("a", 0, 0)], image_size=(64, 48), submission_time="2024-01-01T00:00:05Z"),
        answer(kind="class", label="a", submission_time="2024-01-01T00:00:09Z"),
    ]
    merged = consolidate(answers)
    assert merged == Consolidated(
        "boxes", 3, pytest.approx(2 / 3), boxes=[box("a", 0, 0)], image_size=(64, 48),
        submission_time="2024-01-01T00:00:05Z", box_support=[pytest.approx(2 / 3)],  # 2 of 3 reviewers drew it
    )


def test_consolidate_classes() -> None:
    answers = [answer(kind="class", label="cat"), answer(kind="class", label="cat", submission_time="t2"),
               answer(kind="class", label="dog", submission_time="t1")]
    merged = consolidate(answers)
    assert (merged.kind, merged.workers, merged.label, merged.submission_time) == ("class", 3, "cat", "t2")
    assert merged.agreement == pytest.approx(2 / 3)
    assert merged.boxes == []


def test_consolidate_verifications_by_majority_per_label() -> None:
    answers = [
        answer(kind="verification", verified={"face": True, "hat": False}),
        answer(kind="verification", verified={"face": True, "hat": True}),
        answer(kind="verification", verified={"face": False}),
        answer(kind="verification", verified={"face": True, "hat": True}),
    ]
    merged = consolidate(answers)
    assert merged.verified == {"face": True, "hat": False}  # hat: 2 of 4 is no majority
    assert merged.agreement == pytest.approx(1 / 4)  # only the first answered exactly that
    assert merged.submission_time is None


def test_consolidate_unknown_answers() -> None:
    assert consolidate([answer(kind="unknown")]).agreement == 1.0
    two = consolidate([answer(kind="unknown"), answer(kind="unknown")])
    assert (two.kind, two.workers, two.agreement) == ("unknown", 2, 0.0)


# --- conversion -------------------------------------------------------------------------------------------
def test_answer_error_carries_its_reason() -> None:
    error = AnswerError("bad_box", "details")
    assert error.reason == "bad_box"
    assert str(error) == "bad_box: details"
    assert isinstance(error, ValueError)


def test_box_answers_with_and_without_image_size() -> None:
    raw = {
        "answerContent": {
            "annotatedResult": {
                "boundingBoxes": [{"label": "a", "left": 1, "top": 2, "width": 3.5, "height": 4, "extra": 9}],
                "inputImageProperties": {"width": 64, "height": 48},
            }
        },
        "workerId": "w1",
        "submissionTime": "2024-01-01T00:00:00Z",
    }
    parsed = parse_answer(raw)
    assert parsed == HumanAnswer(
        "boxes", [box("a", 1, 2, 3.5, 4)], (64, 48), worker_id="w1", submission_time="2024-01-01T00:00:00Z"
    )
    assert parsed.labelled_boxes() == [LabelledBox("a", (1.0, 2.0, 3.5, 4.0))]
    no_size = parse_answer({"answerContent": {"annotatedResult": {"boundingBoxes": None}}})
    assert (no_size.kind, no_size.boxes, no_size.image_size) == ("boxes", [], None)
    half = {"annotatedResult": {"boundingBoxes": [], "inputImageProperties": {"width": 64}}}
    assert parse_answer({"answerContent": half}).image_size is None
    other_half = {"annotatedResult": {"boundingBoxes": [], "inputImageProperties": {"height": 64}}}
    assert parse_answer({"answerContent": other_half}).image_size is None


@pytest.mark.parametrize(
    "bad",
    [
        {"left": 1, "top": 2, "width": 3, "height": 4},
        {"label": 5, "left": 1, "top": 2, "width": 3, "height": 4},
        {"label": "a", "left": "1", "top": 2, "width": 3, "height": 4},
        {"label": "a", "left": 1, "top": 2, "width": 3},
        {"label": "a", "left": 1, "top": None, "width": 3, "height": 4},
    ],
)
def test_bad_boxes_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(AnswerError) as caught:
        parse_answer({"answerContent": {"annotatedResult": {"boundingBoxes": [bad]}}})
    assert caught.value.reason == "bad_box"


def test_answers_without_content_are_refused() -> None:
    for raw in ({}, {"answerContent": None}, {"answerContent": "text"}):
        with pytest.raises(AnswerError) as caught:
            parse_answer(raw)
        assert caught.value.reason == "no_answer_content"


def test_verification_class_and_unknown_answers() -> None:
    verification = parse_answer(
        {"answerContent": {"labelVerification": {"labels": [{"label": "face", "verified": 1}, {"label": 7}]}}}
    )
    assert verification == HumanAnswer("verification", verified={"face": True, "7": False})
    assert parse_answer({"answerContent": {"labelVerification": {"labels": None}}}).verified == {}
    assert parse_answer({"answerContent": {"pick": {"label": "cat"}}}) == HumanAnswer("class", label="cat")
    for label in ("", conversion.NONE_OF_THE_ABOVE, None, 3):
        parsed = parse_answer({"answerContent": {"pick": {"label": label}}})
        assert (parsed.kind, parsed.label) == ("class", None)
    assert parse_answer({"answerContent": {"note": "x", "other": {"no": "label"}}}).kind == "unknown"
    # A result without boundingBoxes is not a box answer.
    assert parse_answer({"answerContent": {"annotatedResult": {"x": 1}}}).kind == "unknown"


def test_human_answers_needs_a_non_empty_list() -> None:
    for output in ({}, {"humanAnswers": []}, {"humanAnswers": {"a": 1}}):
        with pytest.raises(AnswerError) as caught:
            human_answers(output)
        assert caught.value.reason == "no_answers"
    found = human_answers({"humanAnswers": [{"answerContent": {"pick": {"label": "cat"}}}]})
    assert found == [HumanAnswer("class", label="cat")]


def test_class_maps_keep_order_and_add_unknown_labels() -> None:
    assert class_map_for(["b", "a", "b"], ["c", "a"]) == {"0": "b", "1": "a", "2": "c"}
    assert class_map_for([]) == {}
    assert extend_class_map({"3": "a", "7": "b"}, ["b", "c", "a", "d", "c"]) == {"3": "a", "7": "b", "8": "c", "9": "d"}
    assert extend_class_map({}, ["x"]) == {"0": "x"}


def test_detection_line_field_for_field() -> None:
    line = detection_line(
        "s3://b/i.png", "loop-1", [box("b", 1, 2, 3, 4), box("a", 5, 6, 7, 8)], (64, 48),
        {"0": "a", "1": "b", "2": "a"}, "2024-01-01T00:00:00Z",
    )
    assert line == {
        "source-ref": "s3://b/i.png",
        "bounding-box": {
            "annotations": [
                {"class_id": 1, "width": 3, "top": 2, "height": 4, "left": 1},
                {"class_id": 0, "width": 7, "top": 6, "height": 8, "left": 5},
            ],
            "image_size": [{"width": 64, "height": 48, "depth": 3}],
        },
        "bounding-box-metadata": {
            "job-name": "a2i/loop-1",
            "class-map": {"0": "a", "1": "b", "2": "a"},
            "human-annotated": "yes",
            "objects": [{"confidence": 1}, {"confidence": 1}],
            "creation-date": "2024-01-01T00:00:00Z",
            "type": "groundtruth/object-detection",
        },
    }
    other = detection_line("s3://b/i.png", "l", [], (1, 1), {}, None, attribute="faces")
    assert set(other) == {"source-ref", "faces", "faces-metadata"}


def test_classification_line_field_for_field() -> None:
    line = classification_line("s3://b/i.png", "loop-2", "cat", {"0": "dog", "4": "cat"}, "2024-02-02T00:00:00Z")
    assert line == {
        "source-ref": "s3://b/i.png",
        "label": 4,
        "label-metadata": {
            "confidence": 1,
            "class-name": "cat",
            "human-annotated": "yes",
            "creation-date": "2024-02-02T00:00:00Z",
            "type": "groundtruth/image-classification",
            "job-name": "a2i/loop-2",
        },
    }
    assert set(classification_line("s", "l", "cat", {"0": "cat"}, None, attribute="kind")) == {
        "source-ref", "kind", "kind-metadata"
    }


def test_task_object_and_input_labels() -> None:
    assert task_object({"inputContent": {"taskObject": "s3://b/k.png"}}) == "s3://b/k.png"
    for bad in ({}, {"inputContent": "s3://b/k.png"}, {"inputContent": {"taskObject": "https://x/k.png"}},
                {"inputContent": {"taskObject": 5}}):
        with pytest.raises(AnswerError) as caught:
            task_object(bad)
        assert caught.value.reason == "no_task_object"
    assert input_labels({"inputContent": {"labels": ["a", 3, "b"]}}) == ["a", "b"]
    assert input_labels({"inputContent": {"labels": "a"}}) == []
    assert input_labels({"inputContent": "x"}) == []
    assert input_labels({}) == []


def output_json(**answer_content: Any) -> dict[str, Any]:
    return {
        "humanLoopName": "loop-9",
        "inputContent": {"taskObject": "s3://b/k.png", "labels": ["face", "hat"]},
        "humanAnswers": [{"answerContent": answer_content, "submissionTime": "2024-03-03T00:00:00Z"}],
    }


def test_reference_conversion_class_maps_and_refusals() -> None:
    boxes = {"annotatedResult": {"boundingBoxes": [box("hat", 1, 2, 3, 4)], "inputImageProperties": {"width": 9,
                                                                                                    "height": 8}}}
    from_input = convert_a2i_to_augmented_manifest(output_json(**boxes))
    assert from_input["bounding-box-metadata"]["class-map"] == {"0": "face", "1": "hat"}
    assert from_input["bounding-box"]["annotations"][0]["class_id"] == 1
    assert from_input["bounding-box-metadata"]["job-name"] == "a2i/loop-9"
    assert from_input["bounding-box-metadata"]["creation-date"] == "2024-03-03T00:00:00Z"
    assert from_input["bounding-box"]["image_size"] == [{"width": 9, "height": 8, "depth": 3}]
    given = convert_a2i_to_augmented_manifest(output_json(**boxes), class_map={"5": "hat"}, attribute="faces")
    assert given["faces-metadata"]["class-map"] == {"5": "hat"}
    assert given["faces"]["annotations"][0]["class_id"] == 5
    for content in ({"pick": {"label": "face"}}, {"annotatedResult": {"boundingBoxes": []}}):
        with pytest.raises(AnswerError) as caught:
            convert_a2i_to_augmented_manifest(output_json(**content))
        assert caught.value.reason == "not_boxes"


# --- boundaries found by the mutation check --------------------------------------------------------------
def test_single_trials_and_tiny_boxes() -> None:
    assert wilson(1, 1) != (0.0, 1.0)
    assert wilson(1, 1)[0] == pytest.approx(0.2065493, abs=1e-6)
    assert proportion(1, 1).value == 1.0
    assert iou((0, 0, 10, 10), (9.5, 0, 10, 10)) == pytest.approx(5 / 195)  # overlap narrower than a pixel
    assert iou((0, 0, 10, 10), (0, 9.5, 10, 10)) == pytest.approx(5 / 195)
    assert iou((0, 0, 0.5, 0.5), (0, 0, 0.5, 0.5)) == 1.0  # a union smaller than one


def test_a_box_skips_clusters_of_other_labels_to_reach_its_own() -> None:
    workers = [[box("b", 50, 50), box("a", 0, 0)], [box("a", 0, 0)]]
    assert consolidate_boxes(workers) == ([box("a", 0, 0)], 0.5)  # the second reviewer drew exactly that


def test_consolidated_boxes_without_any_image_size() -> None:
    merged = consolidate([answer(kind="boxes", boxes=[box("a", 0, 0)]), answer(kind="boxes", boxes=[box("a", 0, 0)])])
    assert (merged.image_size, merged.boxes, merged.agreement) == (None, [box("a", 0, 0)], 1.0)


def test_verification_and_unknown_keep_kind_workers_and_time() -> None:
    answers = [
        answer(kind="verification", verified={"face": True}, submission_time="t1"),
        answer(kind="verification", verified={"face": True, "hat": False}, submission_time="t3"),
        answer(kind="verification", verified={"face": False, "hat": False}, submission_time="t2"),
    ]
    merged = consolidate(answers)
    assert merged == Consolidated("verification", 3, pytest.approx(2 / 3), verified={"face": True, "hat": False},
                                  submission_time="t3")  # the first, without "hat", agrees: no verdict is False
    unknown = consolidate([answer(kind="unknown", submission_time="t9")])
    assert unknown == Consolidated("unknown", 1, 1.0, submission_time="t9")


def test_error_details_name_what_is_missing() -> None:
    with pytest.raises(ValueError, match=r"^no answers to consolidate$"):
        consolidate([])
    checks = [
        (lambda: parse_answer({}), "^no_answer_content: humanAnswers\\[\\]\\.answerContent is missing$"),
        (lambda: human_answers({}), "^no_answers: output.json has no humanAnswers$"),
        (lambda: task_object({}), "^no_task_object: inputContent.taskObject is not an s3:// URI$"),
        (lambda: parse_answer({"answerContent": {"annotatedResult": {"boundingBoxes": [{}]}}}),
         "^bad_box: a box needs a label and numeric left, top, width, height$"),
        (lambda: convert_a2i_to_augmented_manifest(output_json(pick={"label": "a"})),
         "^not_boxes: the first answer is not a bounding-box answer with image properties$"),
    ]
    for call, message in checks:
        with pytest.raises(AnswerError, match=message):
            call()


def test_every_answer_kind_keeps_its_reviewer_and_time() -> None:
    common = {"workerId": "w7", "submissionTime": "2024-05-05T00:00:00Z"}
    for content in ({"pick": {"label": "cat"}}, {"labelVerification": {"labels": []}}, {"note": "x"}):
        parsed = parse_answer({"answerContent": content, **common})
        assert (parsed.worker_id, parsed.submission_time) == ("w7", "2024-05-05T00:00:00Z"), content
