"""``hitl review --auto``: the simulated reviewer answers through the portal from ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hitl.aws import parse_s3_uri
from hitl.cli.review import review_app
from tests.review.conftest import (
    BUCKET,
    IMAGE_KEY,
    ReviewProcess,
    a2i_client,
    flow_arn,
    input_content,
    unique,
    wait_status,
)

pytestmark = pytest.mark.integration
TRUTH_BOX = {"left": 210, "top": 118, "width": 148, "height": 205}


def truth_file(tmp_path: Path) -> Path:
    line = {
        "source-ref": f"s3://{BUCKET}/{IMAGE_KEY}",
        "bounding-box": {
            "image_size": [{"width": 640, "height": 480, "depth": 3}],
            "annotations": [{"class_id": 0, **TRUTH_BOX}],
        },
        "bounding-box-metadata": {
            "objects": [{"confidence": 1}],
            "class-map": {"0": "face"},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
        },
    }
    path = tmp_path / "truth.manifest"
    path.write_text(json.dumps(line) + "\n")
    return path


def test_auto_reviewer_answers_from_truth(
    start_review: Any, review_files: dict[str, Path], aws_env: dict[str, Any], tmp_path: Path
) -> None:
    service: ReviewProcess = start_review("auto")
    a2i = a2i_client(service.url)
    known, unknown = unique("auto"), unique("auto-unknown")
    a2i.start_human_loop(
        HumanLoopName=known, FlowDefinitionArn=flow_arn("conf-boxes"), HumanLoopInput={"InputContent": input_content()}
    )
    a2i.start_human_loop(
        HumanLoopName=unknown,
        FlowDefinitionArn=flow_arn("conf-boxes"),
        HumanLoopInput={"InputContent": input_content(image_key="images/review/not-in-truth.png")},
    )
    args = ["--auto", "--truth", str(truth_file(tmp_path)), "--reviewer", "bob"]
    args += ["--password-file", str(review_files["passwords"]), "--url", service.url, "--until-idle", "0"]
    result = CliRunner().invoke(review_app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary == {"reviewer": "bob", "answered": 1, "corrupted": 0, "skipped": 1, "lost": 0}

    done = wait_status(a2i, known, "Completed")
    bucket, key = parse_s3_uri(done["HumanLoopOutput"]["OutputS3Uri"])
    output = json.loads(aws_env["s3"].get_object(Bucket=bucket, Key=key)["Body"].read())
    result_boxes = output["humanAnswers"][0]["answerContent"]["annotatedResult"]
    assert result_boxes["boundingBoxes"] == [{"label": "face", **TRUTH_BOX}]
    assert result_boxes["inputImageProperties"] == {"width": 640, "height": 480}
    assert a2i.describe_human_loop(HumanLoopName=unknown)["HumanLoopStatus"] == "InProgress"


def test_operator_page_shows_counts_and_throughput(start_review: Any, portal_as: Any) -> None:
    service: ReviewProcess = start_review("operator")
    a2i = a2i_client(service.url)
    name = unique("op")
    a2i.start_human_loop(
        HumanLoopName=name, FlowDefinitionArn=flow_arn("conf-boxes"), HumanLoopInput={"InputContent": input_content()}
    )
    carol = portal_as(service.url, "carol")
    carol.open_task(name)
    carol.submit(
        name, {"annotatedResult": {"boundingBoxes": [], "inputImageProperties": {"width": 640, "height": 480}}}
    )
    wait_status(a2i, name, "Completed")
    alice = portal_as(service.url, "alice")
    _, page, _ = alice._request("GET", "/operator")
    html = page.decode()
    assert "Completed" in html
    assert "<td>carol</td><td>1</td>" in html
    assert name in html
    from hitl.review.portal_client import PortalHTTPError

    with pytest.raises(PortalHTTPError) as caught:
        carol._request("GET", "/operator")  # carol is not an operator
    assert caught.value.status == 403
