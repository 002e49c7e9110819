"""DetectionRecords as JSON objects in S3: the durable copy the index points at."""

from __future__ import annotations

from hitl import aws
from hitl.domain.records import DetectionRecord
from hitl.settings import Settings


class RecordStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def key_for(self, image_id: str) -> str:
        return f"{self.settings.records_prefix}{image_id}.json"

    def put(self, record: DetectionRecord) -> str:
        key = self.key_for(record.image_id)
        aws.client("s3").put_object(
            Bucket=self.settings.bucket,
            Key=key,
            Body=record.model_dump_json().encode(),
            ContentType="application/json",
        )
        return self.settings.s3_uri(key)

    def get(self, image_id: str) -> DetectionRecord | None:
        s3 = aws.client("s3")
        try:
            body = s3.get_object(Bucket=self.settings.bucket, Key=self.key_for(image_id))["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return DetectionRecord.model_validate_json(body)
