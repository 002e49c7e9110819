"""S3 ``ObjectCreated`` notifications as delivered to SQS. Pure parsing."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus


class MalformedMessage(ValueError):
    """A message that can never be applied; ``reason`` is a stable, countable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class CreatedObject:
    bucket: str
    key: str
    event_name: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_notification(body: str) -> list[CreatedObject]:
    """The created objects in one message; [] for S3's test event and other event kinds."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedMessage("not_json", str(exc)) from exc
    if not isinstance(message, dict):
        raise MalformedMessage("not_an_object", "the message body is not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise MalformedMessage("no_records", "neither Records nor an S3 test event")
    created = []
    for record in records:
        try:
            name = str(record["eventName"])
            bucket = str(record["s3"]["bucket"]["name"])
            # Keys arrive URL-encoded (moto even encodes "/").
            key = unquote_plus(str(record["s3"]["object"]["key"]))
        except (KeyError, TypeError) as exc:
            raise MalformedMessage("bad_record", f"missing field {exc}") from exc
        if name.startswith("ObjectCreated:"):
            created.append(CreatedObject(bucket, key, name))
    return created
