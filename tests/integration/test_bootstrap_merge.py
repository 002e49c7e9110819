"""Bootstrap on a bucket that already has CORS rules and event notifications keeps them (moto's server)."""

from __future__ import annotations

import pytest

from hitl import aws
from hitl.settings import Settings
from hitl.stack.bootstrap import CORS_RULE_ID, UPLOADS_NOTIFICATION_ID, bootstrap

pytestmark = pytest.mark.integration


def test_bootstrap_merges_cors_and_notifications_and_is_idempotent(settings: Settings) -> None:
    local = settings.model_copy(
        update={
            "bucket": "hitl-merge-test",
            "uploads_queue": "merge-uploads",
            "events_queue": "merge-events",
            "notifications_queue": "merge-notices",
            "params_path": "/mergetest/",
        }
    )
    s3, sqs = aws.client("s3"), aws.client("sqs")
    s3.create_bucket(Bucket=local.bucket)
    theirs_url = sqs.create_queue(QueueName="someone-elses-queue")["QueueUrl"]
    theirs_arn = sqs.get_queue_attributes(QueueUrl=theirs_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    their_rule = {"ID": "website", "AllowedMethods": ["GET", "HEAD"], "AllowedOrigins": ["https://example.com"]}
    s3.put_bucket_cors(Bucket=local.bucket, CORSConfiguration={"CORSRules": [their_rule]})
    their_queue = {
        "Id": "reports",
        "QueueArn": theirs_arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "reports/"}]}},
    }
    s3.put_bucket_notification_configuration(
        Bucket=local.bucket, NotificationConfiguration={"QueueConfigurations": [their_queue]}
    )

    for _ in range(2):  # a second run changes nothing
        bootstrap(local)
        rules = s3.get_bucket_cors(Bucket=local.bucket)["CORSRules"]
        assert [r.get("ID") for r in rules] == ["website", CORS_RULE_ID]
        assert rules[0]["AllowedOrigins"] == ["https://example.com"]
        queues = s3.get_bucket_notification_configuration(Bucket=local.bucket)["QueueConfigurations"]
        by_id = {q["Id"]: q for q in queues}
        assert set(by_id) == {"reports", UPLOADS_NOTIFICATION_ID}
        assert by_id["reports"]["QueueArn"] == theirs_arn
        assert by_id[UPLOADS_NOTIFICATION_ID]["QueueArn"].endswith(":merge-uploads")
