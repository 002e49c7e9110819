"""The reviewer portal in headless Chromium: sign in, adjust the prefilled box, submit, find the results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hitl.aws import parse_s3_uri
from tests.review.conftest import FACE_BOX, ReviewProcess, a2i_client, flow_arn, input_content, unique, wait_status

pytestmark = [pytest.mark.integration, pytest.mark.browser]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (deploy/apt-packages/browser.txt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield launched
        launched.close()


def test_review_in_the_browser(
    browser: Any, start_review: Any, passwords: dict[str, str], aws_env: dict[str, Any], inbox: Any
) -> None:
    service: ReviewProcess = start_review("browser")
    a2i = a2i_client(service.url)
    name = unique("browser")
    a2i.start_human_loop(
        HumanLoopName=name,
        FlowDefinitionArn=flow_arn("conf-boxes"),
        HumanLoopInput={"InputContent": input_content()},
    )

    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(f"{service.url}/portal")
    assert page.url.endswith("/login")  # the portal needs a session
    page.fill("#username", "carol")
    page.fill("#password", passwords["carol"])
    page.click("#sign-in")
    page.wait_for_selector('#stage[data-ready="true"]')
    page.wait_for_selector("#overlay rect.box")
    assert page.text_content("#task-name") == name

    box = page.locator("#overlay rect.box").first
    bounds = box.bounding_box()
    page.mouse.move(bounds["x"] + bounds["width"] / 2, bounds["y"] + bounds["height"] / 2)
    page.mouse.down()
    page.mouse.up()  # selects the box: its corner handles appear
    handle = page.locator('#overlay rect.handle[data-corner="se"]').bounding_box()
    scale = 640 / page.locator("#task-image").bounding_box()["width"]
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(handle["x"] + 40 / scale, handle["y"] + 30 / scale, steps=5)
    page.mouse.up()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-portal.png"), full_page=True)

    page.keyboard.press("Enter")  # the submit shortcut
    page.wait_for_selector("#status:has-text('Submitted')")
    page.close()

    done = wait_status(a2i, name, "Completed")
    bucket, key = parse_s3_uri(done["HumanLoopOutput"]["OutputS3Uri"])
    output = json.loads(aws_env["s3"].get_object(Bucket=bucket, Key=key)["Body"].read())
    assert output["humanLoopName"] == name
    assert output["flowDefinitionArn"] == flow_arn("conf-boxes")
    assert output["inputContent"] == json.loads(input_content())
    (answer,) = output["humanAnswers"]
    assert answer["workerMetadata"]["identityData"]["sub"] == "carol"
    result = answer["answerContent"]["annotatedResult"]
    assert result["inputImageProperties"] == {"width": 640, "height": 480}
    (adjusted,) = result["boundingBoxes"]
    assert adjusted["label"] == "face"
    assert (adjusted["left"], adjusted["top"]) == (FACE_BOX["left"], FACE_BOX["top"])
    # Dragged by about 40 x 30 image pixels (screen rounding moves it a few pixels either way).
    assert 30 <= adjusted["width"] - FACE_BOX["width"] <= 50, adjusted
    assert 20 <= adjusted["height"] - FACE_BOX["height"] <= 40, adjusted
    assert answer["timeSpentInSeconds"] >= 0

    event = inbox.wait(name, "Completed")
    assert event["detail-type"] == "SageMaker A2I HumanLoop Status Change"
    assert event["source"] == "hitl.review"
    assert event["detail"]["humanLoopOutput"]["outputS3Uri"] == done["HumanLoopOutput"]["OutputS3Uri"]
