"""``hitl dataset import`` / ``export``: a labelled dataset in and out of the pipeline's bucket.

Import: read the files (:mod:`hitl.datasets.formats`), upload each image content-addressed (the key
a submission of the same bytes uses, so importing twice stores it once), build one object-detection
manifest line per image, validate every line by the Rekognition rules against the uploaded image's
real size and format, and add the valid ones to the labelled dataset under ``import-<image id>``
(idempotent: the same image imported again replaces its line and is not counted twice). A newer
human answer for the same image wins when the training manifest is merged, by ``source-ref``.

Export: the seed manifest merged with every labelled example (what the trainer trains and tests on),
its images downloaded to ``OUT/images/``. Audit verdicts are never in the labelled dataset, so an
audit-only answer is never exported.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from hitl import aws
from hitl.datasets.formats import Format, FormatError, LabelledImage, read, write
from hitl.domain.images import content_id
from hitl.domain.manifest import DetectionLine, detection_line, parse_line
from hitl.domain.manifest_validation import ImageInfo, LineError, validate_manifest
from hitl.logs import get_logger
from hitl.settings import Settings

log = get_logger("hitl.datasets")
TRANSFER_THREADS = 8


@dataclass
class ImportReport:
    read: int = 0
    added: int = 0  # new labelled examples
    replaced: int = 0  # images imported before: line rewritten, not counted again
    labels: dict[str, int] = field(default_factory=dict)
    format_errors: list[FormatError] = field(default_factory=list)
    line_errors: list[LineError] = field(default_factory=list)
    dataset_errors: list[str] = field(default_factory=list)

    @property
    def errors_by_rule(self) -> dict[str, int]:
        return dict(Counter([e.rule for e in self.format_errors] + [e.rule for e in self.line_errors]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "added": self.added,
            "replaced": self.replaced,
            "labels": self.labels,
            "errors_by_rule": self.errors_by_rule,
            "errors": [str(e) for e in self.format_errors] + [str(e) for e in self.line_errors],
            "dataset_errors": self.dataset_errors,
        }


def _fetch_source(source: str, work: Path) -> Path:
    """A local folder or file as is; an s3:// prefix downloaded to ``work``."""
    if not source.startswith("s3://"):
        return Path(source)
    bucket, _, prefix = source[5:].partition("/")
    s3 = aws.client("s3")
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]
    if not keys:
        raise FileNotFoundError(f"nothing under {source}")
    if len(keys) == 1 and keys[0] == prefix:  # one file: the annotation file itself
        target = work / PurePosixPath(prefix).name
        s3.download_file(bucket, prefix, str(target))
        return target
    base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    for key in keys:
        target = work / key[len(base) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(target))
    return work


def _read_image(image_dir: Path, name: str) -> bytes | None:
    if name.startswith("s3://"):
        bucket, key = aws.parse_s3_uri(name)
        try:
            return bytes(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception:  # noqa: BLE001 - reported as image-missing by the caller
            return None
    path = image_dir / name
    if not path.is_file():
        # Formats often name the image without its folder: look it up by file name.
        found = next(iter(image_dir.rglob(PurePosixPath(name).name)), None)
        path = found if found is not None else path
    return path.read_bytes() if path.is_file() else None


def import_dataset(settings: Settings, source: str, fmt: Format, dataset_name: str | None = None) -> ImportReport:
    from hitl.loops.dataset import LabelledDataset
    from hitl.model.data import decode_image

    report = ImportReport()
    work = Path(tempfile.mkdtemp(prefix="hitl-import-"))
    try:
        result = read(_fetch_source(source, work), fmt)
        report.format_errors.extend(result.errors)
        report.read = len(result.images)
        labels = sorted({label for image in result.images for label, _ in image.boxes})
        class_map = {str(i): label for i, label in enumerate(labels)}

        def upload(image: LabelledImage) -> tuple[LabelledImage, str | None, ImageInfo | None]:
            data = _read_image(result.image_dir, image.name)
            if data is None:
                return image, None, None
            try:
                _, info = decode_image(data)
            except Exception:  # noqa: BLE001 - validation reports it as image-readable
                info = None
            extension = "png" if info is not None and info.format == "png" else "jpg"
            key = f"{settings.images_prefix}{content_id(data)}.{extension}"
            aws.client("s3").put_object(Bucket=settings.bucket, Key=key, Body=data)
            return image, settings.s3_uri(key), info

        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            uploaded = list(pool.map(upload, result.images))
        lines: list[str] = []
        infos: dict[str, ImageInfo] = {}
        for image, uri, info in uploaded:
            if uri is None:
                missing = FormatError(image.name, "image-missing", f"not found in {result.image_dir}")
                report.format_errors.append(missing)
                continue
            if info is not None:
                infos[uri] = info
            line = detection_line(uri, image.width, image.height, image.boxes, class_map, job_name=f"import/{fmt}")
            lines.append(line.to_json())
        validation = validate_manifest(lines, infos.get)
        report.line_errors.extend(validation.errors)
        report.dataset_errors = [str(e) for e in validation.dataset_errors]
        report.labels = validation.label_counts
        if not validation.accepted:
            return report
        dataset = LabelledDataset(settings, dataset_name)
        for text in validation.select(lines):
            ref = parse_line(text).source_ref
            name = f"import-{ref.rsplit('/', 1)[-1].split('.')[0][:32]}"
            if dataset.add(name, json.loads(text)):
                report.added += 1
            else:
                report.replaced += 1
        log.info("dataset_imported", source=source, format=fmt, added=report.added, replaced=report.replaced)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def current_lines(settings: Settings, dataset_name: str | None = None) -> list[dict[str, Any]]:
    """The seed manifest merged with every labelled example, as the trainer builds it."""
    from hitl.loops.dataset import LabelledDataset
    from hitl.model.data import read_manifest

    s3 = aws.client("s3")
    try:
        seed_text = s3.get_object(Bucket=settings.bucket, Key=settings.seed_manifest_key)["Body"].read().decode()
        seed = [json.loads(x) for x in read_manifest(seed_text)]
    except s3.exceptions.NoSuchKey:
        seed = []
    return LabelledDataset(settings, dataset_name).build_manifest(base=seed)


@dataclass
class ExportReport:
    images: int
    boxes: int
    labels: dict[str, int]
    skipped: list[str]
    path: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def export_dataset(settings: Settings, fmt: Format, out: Path, dataset_name: str | None = None) -> ExportReport:
    lines = current_lines(settings, dataset_name)
    images: list[LabelledImage] = []
    refs: dict[str, str] = {}
    skipped: list[str] = []
    used: set[str] = set()
    for raw in lines:
        line = parse_line(raw)
        if not isinstance(line, DetectionLine):
            skipped.append(f"{line.source_ref}: image-level labels have no box format")
            continue
        name = PurePosixPath(aws.parse_s3_uri(line.source_ref)[1]).name
        if name in used:  # two folders, one file name: keep both
            name = f"{content_id(name.encode())[:8]}-{name}"
        used.add(name)
        size = line.labels.image_size[0]
        boxes = [(label, (b.left, b.top, b.width, b.height)) for label, b in line.boxes()]
        images.append(LabelledImage(name, size.width, size.height, boxes))
        refs[name] = line.source_ref
    image_dir = out / "images"
    image_dir.mkdir(parents=True, exist_ok=True)

    def download(name: str) -> None:
        bucket, key = aws.parse_s3_uri(refs[name])
        aws.client("s3").download_file(bucket, key, str(image_dir / name))

    with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
        list(pool.map(download, refs))
    target = write(images, out, fmt)
    counts = Counter(label for image in images for label, _ in image.boxes)
    return ExportReport(len(images), sum(counts.values()), dict(counts), skipped, str(target))
