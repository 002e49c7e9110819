"""Rekognition Custom Labels' manifest rules (docs/formats.md §4), checked before training.

Pure: takes manifest lines (JSON text or decoded objects) and, optionally, what is known about each
image (a mapping or a lookup by ``source-ref``), and returns every broken rule per line (1-based
line numbers, rule names) plus the dataset verdict. More than 20 % invalid lines, counted together,
fail the dataset; fewer are dropped and training goes on with the rest.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hitl.domain.manifest import (
    CLASSIFICATION_TYPE,
    DETECTION_TYPE,
    ClassificationLine,
    DetectionLine,
    ManifestLine,
    label_attribute,
    parse_line,
)

MIN_SIDE = 64
MAX_SIDE = 4096
MAX_IMAGE_BYTES = 15 * 1024 * 1024
MAX_ASPECT = 20.0
MAX_BOXES = 50
RESIZE_LONG_SIDE = 1280
MAX_LINES = 250_000
MAX_MANIFEST_BYTES = 1024**3
MAX_LABELS = 250
MAX_INVALID_FRACTION = 0.20
IMAGE_FORMATS = {"png", "jpeg"}
_EXTENSIONS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}

# Rule names, as reported.
RULES = (
    "json", "line-format", "source-ref", "single-bucket", "image-readable", "image-format", "image-size", "image-bytes",
    "aspect-ratio", "image-size-mismatch", "box-count", "box-inside-image", "box-min-size", "class-map",
    "object-confidence", "duplicate-image",
    # dataset rules
    "empty", "manifest-lines", "manifest-bytes", "mixed-task-types", "label-count", "invalid-budget",
    "train-test-overlap",
)  # fmt: skip


@dataclass(frozen=True)
class ImageInfo:
    """What the caller measured about an image (all optional beyond the size)."""

    width: int
    height: int
    format: str | None = None  # "png" / "jpeg" / anything else
    size_bytes: int | None = None


@dataclass(frozen=True)
class LineError:
    line: int  # 1-based
    rule: str
    message: str
    source_ref: str | None = None

    def __str__(self) -> str:
        return f"line {self.line}: [{self.rule}] {self.message}"


@dataclass(frozen=True)
class DatasetError:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"dataset: [{self.rule}] {self.message}"


@dataclass(frozen=True)
class ValidationReport:
    total_lines: int
    valid_lines: tuple[int, ...]  # 0-based indexes of the lines that passed
    errors: tuple[LineError, ...]
    dataset_errors: tuple[DatasetError, ...]
    label_counts: dict[str, int] = field(default_factory=dict)  # over valid lines

    @property
    def invalid_lines(self) -> int:
        return self.total_lines - len(self.valid_lines)

    @property
    def invalid_fraction(self) -> float:
        return self.invalid_lines / self.total_lines if self.total_lines else 0.0

    @property
    def accepted(self) -> bool:
        return not self.dataset_errors

    def rule_counts(self) -> dict[str, int]:
        return dict(Counter(e.rule for e in self.errors))

    def summary(self, max_lines: int = 20) -> str:
        """Human-readable verdict: the dataset rules broken, counts per line rule, the first errors."""
        verdict = "accepted" if self.accepted else "REJECTED"
        out = [
            f"manifest {verdict}: {len(self.valid_lines)}/{self.total_lines} lines valid "
            f"({self.invalid_fraction:.0%} invalid, budget {MAX_INVALID_FRACTION:.0%})"
        ]
        out += [f"  {e}" for e in self.dataset_errors]
        if self.errors:
            counts = ", ".join(f"{rule}: {n}" for rule, n in sorted(self.rule_counts().items()))
            out.append(f"  line errors by rule: {counts}")
            out += [f"  {e}" for e in self.errors[:max_lines]]
            if len(self.errors) > max_lines:
                out.append(f"  … {len(self.errors) - max_lines} more")
        return "\n".join(out)

    def select(self, lines: Sequence[Any]) -> list[Any]:
        """The valid ones among the lines this report was made from."""
        return [lines[i] for i in self.valid_lines]


class DatasetRejected(ValueError):
    """A manifest broke a dataset rule; ``str()`` is the report's summary."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.summary())
        self.report = report


ImageLookup = Mapping[str, ImageInfo] | Callable[[str], ImageInfo | None]


def _lookup(images: ImageLookup | None, ref: str) -> ImageInfo | None:
    if images is None:
        return None
    if isinstance(images, Mapping):
        return images.get(ref)
    return images(ref)


def _bucket(ref: str) -> str | None:
    if not ref.startswith("s3://"):
        return None
    bucket, _, key = ref[5:].partition("/")
    return bucket if bucket and key else None


def _image_errors(ref: str, declared: tuple[int, int] | None, info: ImageInfo | None) -> list[tuple[str, str]]:
    errs: list[tuple[str, str]] = []
    suffix = "." + ref.rsplit(".", 1)[-1].lower() if "." in ref.rsplit("/", 1)[-1] else ""
    fmt = info.format.lower() if info and info.format else _EXTENSIONS.get(suffix)
    if fmt not in IMAGE_FORMATS:
        errs.append(("image-format", f"only PNG and JPEG images are accepted (got {fmt or suffix or 'unknown'})"))
    size = (info.width, info.height) if info else declared
    if info and declared and (info.width, info.height) != declared:
        errs.append(
            (
                "image-size-mismatch",
                f"image_size says {declared[0]}×{declared[1]}, the image is {info.width}×{info.height}",
            )
        )
    if size:
        w, h = size
        if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
            errs.append(("image-size", f"{w}×{h} px: each side must be {MIN_SIDE}–{MAX_SIDE} px"))
        if min(w, h) > 0 and max(w, h) / min(w, h) > MAX_ASPECT:
            errs.append(("aspect-ratio", f"{w}×{h} px: aspect ratio above {MAX_ASPECT:.0f}:1"))
    if info and info.size_bytes is not None and info.size_bytes > MAX_IMAGE_BYTES:
        errs.append(("image-bytes", f"{info.size_bytes} bytes: images are limited to 15 MB"))
    return errs


def _box_errors(line: DetectionLine, size: tuple[int, int] | None) -> list[tuple[str, str]]:
    errs: list[tuple[str, str]] = []
    anns = line.labels.annotations
    if len(anns) > MAX_BOXES:
        errs.append(("box-count", f"{len(anns)} boxes: at most {MAX_BOXES} per image"))
    cmap = line.metadata.class_map
    objects = line.metadata.objects
    if len(objects) != len(anns):
        errs.append(("object-confidence", f"{len(anns)} annotations but {len(objects)} 'objects' confidences"))
    for i, o in enumerate(objects):
        if not 0.0 <= o.confidence <= 1.0:
            errs.append(("object-confidence", f"annotation {i}: confidence {o.confidence} outside 0–1"))
    scale = RESIZE_LONG_SIDE / max(size) if size and max(size) > 0 else None
    for i, a in enumerate(anns):
        if str(a.class_id) not in cmap:
            errs.append(("class-map", f"annotation {i}: class_id {a.class_id} is not in the class map"))
        if min(a.left, a.top, a.width, a.height) < 0:
            errs.append(("box-inside-image", f"annotation {i}: negative value in the box"))
        elif size and (a.left + a.width > size[0] or a.top + a.height > size[1]):
            errs.append(("box-inside-image", f"annotation {i}: box ends outside the {size[0]}×{size[1]} image"))
        if scale is not None and (a.width * scale <= 1 or a.height * scale <= 1):
            errs.append(
                ("box-min-size", f"annotation {i}: {a.width:g}×{a.height:g} px is not larger than 1×1 px "
                 f"once the long side is resized to {RESIZE_LONG_SIDE} px")
            )  # fmt: skip
    return errs


def _check_line(
    raw: Any, attribute: str | None, images: ImageLookup | None
) -> tuple[ManifestLine | None, list[tuple[str, str]]]:
    obj: Any = raw
    if isinstance(raw, str | bytes):
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            return None, [("json", f"not valid JSON: {exc}")]
    if not isinstance(obj, Mapping):
        return None, [("json", "a manifest line must be a JSON object")]
    ref = obj.get("source-ref")
    if not isinstance(ref, str) or _bucket(ref) is None:
        return None, [("source-ref", f"'source-ref' must be an s3://bucket/key URI (got {ref!r})")]
    attr = attribute or label_attribute(obj)
    try:
        line = parse_line(obj, attr)
    except (ValueError, KeyError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, [("line-format", f"label attribute {attr!r}: {first}")]
    info = _lookup(images, ref)
    if images is not None and info is None:
        return line, [("image-readable", "the image is missing or cannot be decoded")]
    declared = None
    if isinstance(line, DetectionLine) and line.labels.image_size:
        declared = (line.labels.image_size[0].width, line.labels.image_size[0].height)
    errs = _image_errors(ref, declared, info)
    if isinstance(line, DetectionLine):
        errs += _box_errors(line, (info.width, info.height) if info else declared)
    return line, errs


def validate_manifest(
    lines: Sequence[str | bytes | Mapping[str, Any]],
    images: ImageLookup | None = None,
    *,
    attribute: str | None = None,
    max_invalid_fraction: float = MAX_INVALID_FRACTION,
) -> ValidationReport:
    """Check every line, then the dataset. ``images`` maps ``source-ref`` to what is known about the
    image; without it, sizes come from the lines' ``image_size`` (detection) and formats from names."""
    errors: list[LineError] = []
    valid: list[int] = []
    parsed: dict[int, ManifestLine] = {}
    buckets: Counter[str] = Counter()
    refs: dict[str, int] = {}
    for index, raw in enumerate(lines):
        line, errs = _check_line(raw, attribute, images)
        ref = line.source_ref if line else None
        if line is not None:
            bucket = _bucket(line.source_ref)
            if bucket:
                buckets[bucket] += 1
            if line.source_ref in refs:
                errs.append(("duplicate-image", f"same image as line {refs[line.source_ref] + 1}"))
            else:
                refs[line.source_ref] = index
            parsed[index] = line
        errors += [LineError(index + 1, rule, message, ref) for rule, message in errs]
        if not errs:
            valid.append(index)
    # Images must all come from one bucket: the most used one is taken as the dataset's.
    if len(buckets) > 1:
        home = buckets.most_common(1)[0][0]
        for index, line in parsed.items():
            if _bucket(line.source_ref) != home:
                errors.append(LineError(index + 1, "single-bucket", f"image outside bucket {home!r}", line.source_ref))
                if index in valid:
                    valid.remove(index)
    errors.sort(key=lambda e: e.line)
    dataset = _dataset_errors(lines, [parsed[i] for i in valid], len(valid), max_invalid_fraction)
    counts: Counter[str] = Counter()
    for i in valid:
        line = parsed[i]
        if isinstance(line, DetectionLine):
            counts.update(name for name, _ in line.boxes())
        else:
            counts[line.label] += 1
    return ValidationReport(len(lines), tuple(valid), tuple(errors), tuple(dataset), dict(counts))


def _dataset_errors(
    lines: Sequence[Any], good: list[ManifestLine], n_valid: int, max_invalid_fraction: float
) -> list[DatasetError]:
    out: list[DatasetError] = []
    total = len(lines)
    if total > MAX_LINES:
        out.append(DatasetError("manifest-lines", f"{total} lines: at most {MAX_LINES}"))
    size = sum(len(x) for x in lines if isinstance(x, str | bytes))
    if size > MAX_MANIFEST_BYTES:
        out.append(DatasetError("manifest-bytes", f"{size} bytes: at most 1 GB"))
    if not good:
        out.append(DatasetError("empty", "no valid line"))
        return out
    invalid = total - n_valid
    if invalid / total > max_invalid_fraction:
        out.append(
            DatasetError(
                "invalid-budget",
                f"{invalid} of {total} lines invalid ({invalid / total:.0%}), more than {max_invalid_fraction:.0%}",
            )
        )
    kinds = {DETECTION_TYPE if isinstance(x, DetectionLine) else CLASSIFICATION_TYPE for x in good}
    if len(kinds) > 1:
        out.append(DatasetError("mixed-task-types", "object-detection and image-classification lines in one dataset"))
        return out
    if isinstance(good[0], ClassificationLine):
        labels = {x.label for x in good if isinstance(x, ClassificationLine)}
        minimum = 2
    else:
        labels = {name for x in good if isinstance(x, DetectionLine) for name, _ in x.boxes()}
        minimum = 1
    if len(labels) < minimum:
        kind = "image classification" if minimum == 2 else "object detection"
        out.append(DatasetError("label-count", f"{kind} needs at least {minimum} label(s); found {len(labels)}"))
    if len(labels) > MAX_LABELS:
        out.append(DatasetError("label-count", f"{len(labels)} labels: at most {MAX_LABELS}"))
    return out


def split_overlap(train: Sequence[ManifestLine], test: Sequence[ManifestLine]) -> list[DatasetError]:
    """No image may be in both the training and the test set."""
    shared = sorted({x.source_ref for x in train} & {x.source_ref for x in test})
    if not shared:
        return []
    more = f" (+{len(shared) - 3} more)" if len(shared) > 3 else ""
    return [DatasetError("train-test-overlap", f"{len(shared)} image(s) in both sets: {', '.join(shared[:3])}{more}")]
