"""Peak memory and time of one embedded training run from a manifest, against the dataset's size.

For each size, face scenes (640×480 PNG) and a fixed 40-scene test split are uploaded to moto's S3
server (started here on a free port), then a fresh process runs what the trainer runs
(``train_from_manifest`` on ``S3Images``) and reports its peak resident set size (``ru_maxrss``) and
the wall time of validation, training and evaluation. Writes ``bench/results/training_memory.json``.

Run: ``python bench/bench_training_memory.py [--sizes 200 600]``. ``--code DIR`` runs the training
process with another checkout's ``shared/`` first on its path (to compare with an earlier version).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "hitl-bench-memory"
TEST_SCENES = 40

CHILD = """
import json, resource, sys, time
from hitl.model.data import S3Images
from hitl.model.training import train_from_manifest
import boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
def lines(key):
    return s3.get_object(Bucket=sys.argv[2], Key=key)["Body"].read().decode().splitlines()
train_lines, test_lines = lines("train.jsonl"), lines("test.jsonl")
images = S3Images(s3)
started = time.perf_counter()
result = train_from_manifest(train_lines, images.image, test_lines=test_lines, images=images.info)
print(json.dumps({
    "seconds": round(time.perf_counter() - started, 1),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "f1": round(float(result.evaluation.f1), 3),
    "train_images": result.artifact.info["train_images"],
    "s3_reads": getattr(images, "fetches", None),
}))
"""


def upload(endpoint: str, size: int) -> None:
    import boto3

    from hitl.model.data import write_manifest
    from hitl.scenes import generate_scenes

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    for split, n, key in (("train", size, "train.jsonl"), ("test", TEST_SCENES, "test.jsonl")):
        files = generate_scenes(split, n, source_prefix=f"s3://{BUCKET}/{split}/")
        for png, line in files:
            s3.put_object(Bucket=BUCKET, Key=line["source-ref"].split("/", 3)[3], Body=png)
        s3.put_object(Bucket=BUCKET, Key=key, Body=write_manifest(line for _, line in files).encode())


def run(size: int, code: Path | None) -> dict[str, Any]:
    from hitl.stack import procs

    with tempfile.TemporaryDirectory() as tmp:
        group = procs.ProcessGroup(Path(tmp))
        port = procs.free_port()
        group.start("moto", [procs.venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)])
        endpoint = f"http://127.0.0.1:{port}"
        try:
            procs.wait_until(lambda: procs.http_ok(f"{endpoint}/moto-api/"), 30, "moto server")
            upload(endpoint, size)
            env = dict(os.environ)
            if code is not None:
                env["PYTHONPATH"] = str(code / "shared")
            child = subprocess.run(
                [sys.executable, "-c", CHILD, endpoint, BUCKET], env=env, capture_output=True, text=True, check=True
            )
            return {"train_scenes": size, "test_scenes": TEST_SCENES, **json.loads(child.stdout.splitlines()[-1])}
        finally:
            group.stop_all(grace=5)


def main() -> None:
    # moto's server takes any keys; never real ones.
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 600])
    parser.add_argument("--code", type=Path, help="a checkout whose shared/ the training process imports")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "training_memory.json")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        rows.append(run(size, args.code))
        print(json.dumps(rows[-1]), flush=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    existing["runs"][args.label] = {
        "rows": rows,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": list(os.getloadavg())},
    }
    args.out.write_text(json.dumps(existing, indent=2) + "\n")


if __name__ == "__main__":
    main()
