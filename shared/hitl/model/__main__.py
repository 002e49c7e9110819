"""Train the embedded model from S3 manifests and publish it: ``python -m hitl.model --help``.

A rejected dataset prints the validation summary and exits with status 2 (no stack trace).
"""

from __future__ import annotations

import argparse
import json
import sys

from hitl import aws
from hitl.domain.manifest_validation import DatasetRejected
from hitl.model.data import S3Images, read_manifest
from hitl.model.registry import ModelRegistry
from hitl.model.training import train_from_manifest


def _read(uri: str) -> str:
    bucket, key = aws.parse_s3_uri(uri)
    body: bytes = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return body.decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hitl.model", description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="s3:// URI of the training manifest (JSON Lines)")
    parser.add_argument("--test", help="s3:// URI of the test manifest: sets metrics and assumed thresholds")
    parser.add_argument("--publish", action="store_true", help="store the result as a new candidate version")
    parser.add_argument("--promote-min-f1", type=float, help="promote the new version if its test F1 reaches this")
    args = parser.parse_args(argv)

    train_text = _read(args.train)
    test_text = _read(args.test) if args.test else None
    images = S3Images()
    try:
        result = train_from_manifest(
            read_manifest(train_text),
            images.image,
            test_lines=read_manifest(test_text) if test_text else None,
            images=images.info,
        )
    except DatasetRejected as rejected:
        print(rejected.report.summary(), file=sys.stderr)
        return 2
    if result.train_report.errors:
        print(result.train_report.summary(), file=sys.stderr)
    summary: dict[str, object] = {"kind": result.artifact.kind, "labels": list(result.artifact.labels)}
    summary["train_seconds"] = round(result.train_seconds, 2)
    if result.evaluation:
        summary.update(f1=result.evaluation.f1, ap50=result.evaluation.ap50, thresholds=result.artifact.thresholds)
    if args.publish:
        registry = ModelRegistry()
        meta = registry.publish(result.artifact, train_text, test_manifest=test_text)
        summary["version"] = meta.version
        if args.promote_min_f1 is not None and result.evaluation and result.evaluation.f1 >= args.promote_min_f1:
            registry.promote(meta.version, f"test F1 {result.evaluation.f1:.3f} >= {args.promote_min_f1}")
            summary["promoted"] = True
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
