"""A detector process for tests: the detector worker's backend (``create_backend``), on stdin
commands. Each ``detect`` line detects one image and prints (``ANSWER {json}``; logs are other
lines) the version the backend reports and the ProjectVersionArn the DetectCustomLabels request
carried (read from botocore's request)."""

from __future__ import annotations

import json
import sys
from typing import Any

from hitl import aws
from hitl.adapters.detection import create_backend
from hitl.domain.images import decode
from hitl.settings import get_settings


def main(uri: str) -> None:
    settings = get_settings()
    backend = create_backend(settings)
    sent: dict[str, Any] = {}

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.update(params)

    aws.client("rekognition").meta.events.register("provide-client-params.rekognition.DetectCustomLabels", capture)
    bucket, key = aws.parse_s3_uri(uri)
    data = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    image = decode(data, settings.image_limits())
    for line in sys.stdin:
        if line.strip() != "detect":
            continue
        version, predictions = backend.detect(image, data, uri)
        print(
            "ANSWER "
            + json.dumps({"version": version, "sent_arn": sent.get("ProjectVersionArn"), "labels": len(predictions)}),
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1])
