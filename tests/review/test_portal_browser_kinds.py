"""The classification and label-verification editors in headless Chromium: keyboard and mouse, the
checks before sending, and the answers found in output.json (the box editor: test_portal_browser.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hitl.aws import parse_s3_uri
from hitl.review.flow_admin import FlowAdminClient
from tests.review.conftest import REGION, ReviewProcess, a2i_client, flow_arn, input_content, unique, wait_status
from tests.review.test_portal_browser import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def sign_in(browser: Any, url: str, reviewer: str, password: str) -> Any:  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(f"{url}/login")
    page.fill("#username", reviewer)
    page.fill("#password", password)
    page.click("#sign-in")
    page.wait_for_selector('#stage[data-ready="true"]')
    return page


def output_of(a2i: Any, s3: Any, name: str) -> dict[str, Any]:
    done = wait_status(a2i, name, "Completed")
    bucket, key = parse_s3_uri(done["HumanLoopOutput"]["OutputS3Uri"])
    found: dict[str, Any] = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return found


def test_classification_in_the_browser(
    browser: Any,  # noqa: F811
    start_review: Any,
    passwords: dict[str, str],
    aws_env: dict[str, Any],
) -> None:
    service: ReviewProcess = start_review("browser-class")
    flow = unique("things")
    FlowAdminClient(service.url, REGION, access_key="testing", secret_key="testing").create(
        {
            "FlowDefinitionName": flow,
            "TaskType": "ImageClassification",
            "Labels": ["bag", "shoe", "hat"],
            "TaskTitle": "What is in the picture?",
            "Instructions": "Pick the object that fills most of the image.",
        }
    )
    a2i = a2i_client(service.url)
    name = unique("classify")
    # The model's guess is not one of the flow's labels: nothing is prefilled.
    a2i.start_human_loop(
        HumanLoopName=name,
        FlowDefinitionArn=flow_arn(flow),
        HumanLoopInput={"InputContent": input_content(initialValue={"label": "face", "confidence": 40.0})},
    )

    page = sign_in(browser, service.url, "carol", passwords["carol"])
    assert page.text_content("#task-name") == name
    assert page.is_visible("#class-tools")
    assert not page.is_visible("#box-tools")
    assert page.text_content("#task-title") == "What is in the picture?"
    assert page.text_content("#task-instructions") == "Pick the object that fills most of the image."
    options = page.locator("#class-options label").all_text_contents()
    assert [o.strip() for o in options] == ["1. bag", "2. shoe", "3. hat", "0. None of the Above"]
    assert page.locator("#class-options input:checked").count() == 0

    page.keyboard.press("Enter")  # nothing chosen: the page refuses to send
    page.wait_for_selector("#status:has-text('choose a label first')")
    page.keyboard.press("0")
    assert page.is_checked("#choice-3")  # None of the Above
    page.keyboard.press("3")
    assert page.is_checked("#choice-2")
    page.click("label[for=choice-1]")  # changed its mind with the mouse: shoe
    assert page.is_checked("#choice-1")
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Submitted')")
    page.close()

    output = output_of(a2i, aws_env["s3"], name)
    (answer,) = output["humanAnswers"]
    assert answer["answerContent"] == {"category": {"label": "shoe"}}
    assert answer["workerMetadata"]["identityData"]["sub"] == "carol"


def test_label_verification_in_the_browser(
    browser: Any,  # noqa: F811
    start_review: Any,
    passwords: dict[str, str],
    aws_env: dict[str, Any],
) -> None:
    service: ReviewProcess = start_review("browser-verify")
    a2i = a2i_client(service.url)
    name = unique("verify")
    prediction = [{"label": "face", "confidence": 44.0}, {"label": "hat", "confidence": 38.5}]
    a2i.start_human_loop(
        HumanLoopName=name,
        FlowDefinitionArn=flow_arn("review-verify"),
        HumanLoopInput={"InputContent": input_content(initialValue=prediction)},
    )

    page = sign_in(browser, service.url, "bob", passwords["bob"])
    assert page.text_content("#task-name") == name
    assert page.is_visible("#verify-tools")
    assert not page.is_visible("#class-tools")
    rows = [r.strip() for r in page.locator("#verify-options li").all_text_contents()]
    assert [r.split(":")[0] for r in rows] == ["face", "hat"]

    page.keyboard.press("Enter")  # no verdicts yet
    page.wait_for_selector("#status:has-text('answer yes or no for: face, hat')")
    page.keyboard.press("y")  # face: yes (the first label without a verdict)
    assert page.locator('input[name="verify-face"]').nth(0).is_checked()
    page.keyboard.press("Enter")  # hat still open
    page.wait_for_selector("#status:has-text('answer yes or no for: hat')")
    page.locator('input[name="verify-hat"]').nth(1).check()  # hat: no, with the mouse
    page.keyboard.press("Enter")
    page.wait_for_selector("#status:has-text('Submitted')")
    page.close()

    output = output_of(a2i, aws_env["s3"], name)
    (answer,) = output["humanAnswers"]
    assert answer["answerContent"] == {
        "labelVerification": {"labels": [{"label": "face", "verified": True}, {"label": "hat", "verified": False}]}
    }
    assert answer["workerMetadata"]["identityData"]["sub"] == "bob"
