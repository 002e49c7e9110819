"""A2I output.json → manifest line, checked field for field against AWS's reference conversion."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from hitl.domain.conversion import (
    AnswerError,
    class_map_for,
    classification_line,
    convert_a2i_to_augmented_manifest,
    human_answers,
    parse_answer,
)
from hitl.domain.manifest import parse_line

VOC = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]

# docs/formats.md §2 (the pizza sample's output.json).
PIZZA_OUTPUT: dict[str, Any] = {
    "flowDefinitionArn": "arn:aws:sagemaker:us-east-1:111122223333:flow-definition/fd-pizza",
    "humanLoopName": "det-3f2a9c",
    "inputContent": {"taskObject": "s3://bucket/images/a.jpg", "initialValue": "..."},
    "humanAnswers": [
        {
            "answerContent": {
                "annotatedResult": {
                    "boundingBoxes": [
                        {"label": "pepperoni pizza slice", "left": 1042, "top": 627, "width": 2869, "height": 1801}
                    ],
                    "inputImageProperties": {"width": 3911, "height": 2608},
                }
            },
            "submissionTime": "2020-05-01T18:24:53.742Z",
            "acceptanceTime": "2020-05-01T18:22:10.001Z",
            "timeSpentInSeconds": 163.7,
            "workerId": "7fe4cd6b55282093",
            "workerMetadata": {"identityData": {"identityProviderType": "Cognito", "issuer": "...", "sub": "..."}},
        }
    ],
}

# The sample output.json of the AWS Machine Learning Blog post "Object detection and model retraining
# with Amazon SageMaker and Amazon Augmented AI".
BICYCLE_OUTPUT: dict[str, Any] = {
    "flowDefinitionArn": "arn:aws:sagemaker:us-east-1:111122223333:flow-definition/fd-sagemaker-object-detection-demo",
    "humanAnswers": [
        {
            "answerContent": {
                "annotatedResult": {
                    "boundingBoxes": [{"height": 1801, "label": "bicycle", "left": 1042, "top": 627, "width": 2869}],
                    "inputImageProperties": {"height": 2608, "width": 3911},
                }
            },
            "submissionTime": "2020-05-01T18:24:53.742Z",
            "workerId": "xxxxxxxxxx",
        }
    ],
    "humanLoopName": "fc3cea7e-ead8-4c5c-b52d-166ff6147ff0",
    "inputContent": {
        "initialValue": "bicycle",
        "taskObject": "s3://sagemaker-us-east-1-xxxxxxx/a2i-results/sample-a2i-images/pexels-photo-276517.jpeg",
    },
}


def reference_conversion(a2i_output: Any, object_categories_dict: dict[str, str], attribute: str) -> dict[str, Any]:
    """AWS's sample ``convert_a2i_to_augmented_manifest``, transcribed; only its evident slips are
    repaired (``obj`` never appended, the unclosed dict) and the fields its printed output shows
    (``depth``, ``human-annotated``, ``type``) are included."""
    annotations = []
    confidence = []
    for _i, bbox in enumerate(a2i_output["humanAnswers"][0]["answerContent"]["annotatedResult"]["boundingBoxes"]):
        object_class_key = next(key for (key, value) in object_categories_dict.items() if value == bbox["label"])
        obj = {
            "class_id": int(object_class_key),
            "width": bbox["width"],
            "top": bbox["top"],
            "height": bbox["height"],
            "left": bbox["left"],
        }
        annotations.append(obj)
        confidence.append({"confidence": 1})
    props = a2i_output["humanAnswers"][0]["answerContent"]["annotatedResult"]["inputImageProperties"]
    return {
        "source-ref": a2i_output["inputContent"]["taskObject"],
        attribute: {
            "annotations": annotations,
            "image_size": [{"width": props["width"], "height": props["height"], "depth": 3}],
        },
        attribute + "-metadata": {
            "job-name": "a2i/{}".format(a2i_output["humanLoopName"]),
            "class-map": object_categories_dict,
            "human-annotated": "yes",
            "objects": confidence,
            "creation-date": a2i_output["humanAnswers"][0]["submissionTime"],
            "type": "groundtruth/object-detection",
        },
    }


def _assert_same_fields(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    # Field for field, with JSON types: 1042 and 1042.0 are different manifest text.
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)


@pytest.mark.parametrize(
    ("output", "class_map", "attribute"),
    [
        (PIZZA_OUTPUT, {"0": "pepperoni pizza slice"}, "pepperoni_pizza_BB"),
        (BICYCLE_OUTPUT, {str(i): j for i, j in enumerate(VOC)}, "a2i-retraining"),
    ],
)
def test_bounding_box_conversion_equals_the_aws_reference(output, class_map, attribute):
    ours = convert_a2i_to_augmented_manifest(output, class_map, attribute)
    _assert_same_fields(ours, reference_conversion(output, class_map, attribute))


def test_bicycle_sample_gives_the_line_printed_in_the_blog():
    class_map = {str(i): j for i, j in enumerate(VOC)}
    line = convert_a2i_to_augmented_manifest(BICYCLE_OUTPUT, class_map, "a2i-retraining")
    assert line["a2i-retraining"]["annotations"] == [
        {"class_id": 1, "width": 2869, "top": 627, "height": 1801, "left": 1042}
    ]
    assert line["a2i-retraining"]["image_size"] == [{"width": 3911, "depth": 3, "height": 2608}]
    meta = line["a2i-retraining-metadata"]
    assert meta["job-name"] == "a2i/fc3cea7e-ead8-4c5c-b52d-166ff6147ff0"
    assert meta["creation-date"] == "2020-05-01T18:24:53.742Z"
    assert meta["objects"] == [{"confidence": 1}]
    assert meta["type"] == "groundtruth/object-detection"
    assert meta["human-annotated"] == "yes"
    parsed = parse_line(line)  # and the project's manifest model reads it back
    assert parsed.kind == "detection"
    assert parsed.boxes()[0][0] == "bicycle"


def test_reference_sample_of_reference_md_section_4_round_trips():
    line = convert_a2i_to_augmented_manifest(PIZZA_OUTPUT, None, "bounding-box")
    # Without a class map the loop's labels (none here) plus the answered labels make one.
    assert line["bounding-box-metadata"]["class-map"] == {"0": "pepperoni pizza slice"}
    assert line["source-ref"] == "s3://bucket/images/a.jpg"


def test_multiple_boxes_all_kept_and_unknown_label_added_not_crashing():
    output = copy.deepcopy(PIZZA_OUTPUT)
    boxes = output["humanAnswers"][0]["answerContent"]["annotatedResult"]["boundingBoxes"]
    boxes.append({"label": "olive", "left": 1, "top": 2, "width": 30, "height": 40})
    line = convert_a2i_to_augmented_manifest(output, {"0": "pepperoni pizza slice"}, "bb")
    assert [a["class_id"] for a in line["bb"]["annotations"]] == [0, 1]
    assert line["bb-metadata"]["class-map"] == {"0": "pepperoni pizza slice", "1": "olive"}
    assert len(line["bb-metadata"]["objects"]) == 2


def test_classification_answers_and_none_of_the_above():
    labelled = parse_answer({"answerContent": {"category": {"label": "aws_logo"}}, "submissionTime": "t"})
    assert (labelled.kind, labelled.label) == ("class", "aws_logo")
    none = parse_answer({"answerContent": {"category": {"label": "None of the Above"}}})
    assert (none.kind, none.label) == ("class", None)
    line = classification_line(
        "s3://b/images_labeled_by_folder/aws_logo/aws-1.png",
        "det-1",
        "aws_logo",
        class_map_for(["other", "aws_logo"]),
        "2022-04-18T10:00:00.000",
        "brand",
    )
    assert line["brand"] == 1
    assert line["brand-metadata"]["class-name"] == "aws_logo"
    assert line["brand-metadata"]["type"] == "groundtruth/image-classification"
    assert parse_line(line).kind == "classification"


def test_verification_and_empty_answers():
    verdict = parse_answer({"answerContent": {"labelVerification": {"labels": [{"label": "face", "verified": True}]}}})
    assert verdict.verified == {"face": True}
    empty = parse_answer(
        {"answerContent": {"annotatedResult": {"boundingBoxes": [], "inputImageProperties": {"width": 5, "height": 5}}}}
    )
    assert empty.kind == "boxes"
    assert empty.boxes == []
    with pytest.raises(AnswerError):
        human_answers({"humanAnswers": []})
