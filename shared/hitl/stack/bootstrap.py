"""Create, idempotently, the AWS resources the pipeline expects: on moto's server or on AWS.

Bucket (with the CORS rule review UIs need and the upload notification, merged into whatever the
bucket already has: other CORS rules and notifications are kept), SQS queues with
dead-letter queues and redrive policies, the EventBridge rule for A2I status changes with its
queue policy, and the SSM runtime parameters with their defaults (existing values are kept).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hitl import aws
from hitl.params import ParameterStore
from hitl.settings import Settings

A2I_DETAIL_TYPE = "SageMaker A2I HumanLoop Status Change"
A2I_AWS_SOURCE = "aws.sagemaker"
# Our CORS rule and upload notification carry these ids, so a re-run replaces only them.
CORS_RULE_ID = "hitl-review-images"
UPLOADS_NOTIFICATION_ID = "hitl-uploads"


@dataclass(frozen=True)
class Resources:
    bucket: str
    uploads_queue_url: str
    uploads_queue_arn: str
    uploads_dlq_url: str
    events_queue_url: str
    events_queue_arn: str
    events_dlq_url: str
    rule_arn: str


def _ensure_queue(name: str, settings: Settings) -> tuple[str, str, str]:
    """A queue and its dead-letter queue; returns (url, arn, dlq url)."""
    sqs = aws.client("sqs")
    dlq_url = sqs.create_queue(
        QueueName=f"{name}{settings.dlq_suffix}", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(settings.sqs_max_receive_count)})
    # Long visibility: work is deleted only once durable and extended while it runs.
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "60", "ReceiveMessageWaitTimeSeconds": "20"},
    )
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn, dlq_url


def _allow(queue_url: str, queue_arn: str, service: str, source_arn: str) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": f"allow-{service.split('.', maxsplit=1)[0]}",
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}},
            }
        ],
    }
    aws.client("sqs").set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})


def _ensure_bucket(settings: Settings) -> None:
    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=settings.bucket)
    except s3.exceptions.ClientError:
        region = s3.meta.region_name
        kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=settings.bucket, **kwargs)
    s3.put_bucket_cors(Bucket=settings.bucket, CORSConfiguration={"CORSRules": merged_cors_rules(settings)})


def merged_cors_rules(settings: Settings) -> list[dict[str, Any]]:
    """The bucket's CORS rules with ours (by its ID) added or replaced; other rules are kept."""
    s3 = aws.client("s3")
    try:
        existing = s3.get_bucket_cors(Bucket=settings.bucket).get("CORSRules", [])
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchCORSConfiguration":
            raise
        existing = []
    ours = {
        "ID": CORS_RULE_ID,
        "AllowedMethods": ["GET"],
        "AllowedOrigins": settings.cors_allowed_origins,
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 3000,
    }
    return [rule for rule in existing if rule.get("ID") != CORS_RULE_ID] + [ours]


def merged_notifications(settings: Settings, queue_arn: str) -> dict[str, Any]:
    """The bucket's notification configuration with our upload queue (by its Id) added or replaced;
    every other queue, topic, function and EventBridge setting is kept."""
    current = aws.client("s3").get_bucket_notification_configuration(Bucket=settings.bucket)
    current.pop("ResponseMetadata", None)
    ours = {
        "Id": UPLOADS_NOTIFICATION_ID,
        "QueueArn": queue_arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": settings.uploads_prefix}]}},
    }
    queues = [q for q in current.get("QueueConfigurations", []) if q.get("Id") != UPLOADS_NOTIFICATION_ID]
    return {**current, "QueueConfigurations": [*queues, ours]}


def _route_events(
    settings: Settings,
    rule: str,
    pattern: dict[str, list[str]],
    queue: tuple[str, str],
    target_id: str,
    description: str,
) -> str:
    """An EventBridge rule on the bus, targeting the queue (url, arn), and the queue's policy for it."""
    events = aws.client("events")
    rule_arn = str(
        events.put_rule(
            Name=rule,
            EventBusName=settings.event_bus,
            EventPattern=json.dumps(pattern),
            State="ENABLED",
            Description=description,
        )["RuleArn"]
    )
    events.put_targets(Rule=rule, EventBusName=settings.event_bus, Targets=[{"Id": target_id, "Arn": queue[1]}])
    _allow(queue[0], queue[1], "events.amazonaws.com", rule_arn)
    return rule_arn


def ensure_a2i_events(settings: Settings) -> tuple[str, str, str, str]:
    """The events queue (with its dead-letter queue) and the EventBridge rule for A2I status changes
    targeting it, with the queue policy; returns (queue url, queue arn, dlq url, rule arn)."""
    ev_url, ev_arn, ev_dlq = _ensure_queue(settings.events_queue, settings)
    sources = sorted({A2I_AWS_SOURCE, settings.a2i_event_source})
    rule_arn = _route_events(
        settings,
        settings.a2i_rule_name,
        {"source": sources, "detail-type": [A2I_DETAIL_TYPE]},
        (ev_url, ev_arn),
        "ingestor-queue",
        "A2I human loop status changes to the ingestor's queue",
    )
    return ev_url, ev_arn, ev_dlq, rule_arn


def bootstrap(settings: Settings) -> Resources:
    _ensure_bucket(settings)
    up_url, up_arn, up_dlq = _ensure_queue(settings.uploads_queue, settings)

    _allow(up_url, up_arn, "s3.amazonaws.com", f"arn:aws:s3:::{settings.bucket}")
    # All ObjectCreated events (multipart uploads too), under the upload prefix only.
    aws.client("s3").put_bucket_notification_configuration(
        Bucket=settings.bucket, NotificationConfiguration=merged_notifications(settings, up_arn)
    )

    ev_url, ev_arn, ev_dlq, rule_arn = ensure_a2i_events(settings)
    # Training notices (started, rejected, deployed, …) for operators and the demo's report.
    no_url, no_arn, _ = _ensure_queue(settings.notifications_queue, settings)
    _route_events(
        settings,
        settings.notifications_rule_name,
        {"source": [settings.training_event_source]},
        (no_url, no_arn),
        "notifications-queue",
        "Model training notices to the notifications queue",
    )

    ParameterStore(settings).ensure_defaults()
    if settings.aws_setup_on_bootstrap:
        from hitl.a2i.setup import A2ISetup

        A2ISetup(settings).run()
    return Resources(settings.bucket, up_url, up_arn, up_dlq, ev_url, ev_arn, ev_dlq, rule_arn)
