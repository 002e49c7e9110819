from __future__ import annotations

import json

import pytest

from hitl.domain.s3events import MalformedMessage, parse_notification


def record(key: str, name: str = "ObjectCreated:Put", bucket: str = "b") -> dict[str, object]:
    return {"eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 3}}}


def test_keys_are_url_decoded_including_slashes() -> None:
    body = json.dumps({"Records": [record("images_for_detection%2Fcam+1%2Fa%C3%A9.jpg")]})
    (created,) = parse_notification(body)
    assert created.key == "images_for_detection/cam 1/aé.jpg"
    assert created.uri == "s3://b/images_for_detection/cam 1/aé.jpg"


def test_every_object_created_kind_counts() -> None:
    names = ["ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload", "ObjectCreated:Copy", "ObjectRemoved:Delete"]
    body = json.dumps({"Records": [record(f"k{i}", n) for i, n in enumerate(names)]})
    assert [c.event_name for c in parse_notification(body)] == names[:3]


def test_the_s3_test_event_is_skipped() -> None:
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})
    assert parse_notification(body) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not_json"),
        ("[1, 2]", "not_an_object"),
        ('{"hello": "world"}', "no_records"),
        ('{"Records": [{"eventName": "ObjectCreated:Put"}]}', "bad_record"),
    ],
)
def test_malformed_messages_have_a_reason(body: str, reason: str) -> None:
    with pytest.raises(MalformedMessage) as info:
        parse_notification(body)
    assert info.value.reason == reason
