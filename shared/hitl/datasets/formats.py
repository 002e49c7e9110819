"""Labelled datasets on disk in the formats people bring: COCO, YOLO, Pascal VOC, Label Studio, and
Ground Truth / Rekognition manifests. Reading and writing files only; no AWS here.

globox (MIT) reads and writes COCO, YOLO (darknet) and Pascal VOC: one maintained library for three
formats, pure Python on numpy, with exact pixel boxes (LTRB floats) and no image loading. Label Studio's
JSON export has no library of comparable weight (its converter package pulls Label Studio's own stack
and converts from Label Studio only), so its few fields are read and written here, validated by
pydantic. Manifests use the project's own manifest model (:mod:`hitl.domain.manifest`).

Every reader returns the images it understood and, per file or entry, the ones it did not, with the
rule broken: bad input is reported, never silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote

from pydantic import BaseModel, ConfigDict, ValidationError

Format = Literal["manifest", "coco", "yolo", "voc", "labelstudio"]
FORMATS: tuple[Format, ...] = ("manifest", "coco", "yolo", "voc", "labelstudio")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
Box = tuple[float, float, float, float]  # left, top, width, height in pixels


@dataclass
class LabelledImage:
    """One image and its boxes, as exchanged with every format."""

    name: str  # the image's path relative to the dataset's image folder (or an s3:// URI)
    width: int
    height: int
    boxes: list[tuple[str, Box]] = field(default_factory=list)


@dataclass(frozen=True)
class FormatError:
    where: str  # file, or file#entry
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: [{self.rule}] {self.message}"


@dataclass
class ReadResult:
    images: list[LabelledImage]
    errors: list[FormatError]
    image_dir: Path  # where the images' names are resolved


# --- globox: COCO, YOLO, VOC ------------------------------------------------------------------------
def _from_annotations(annotations: Iterable[Any]) -> list[LabelledImage]:
    images = []
    for annotation in annotations:
        width, height = annotation.image_size or (0, 0)
        boxes = [(b.label, (b.xmin, b.ymin, b.xmax - b.xmin, b.ymax - b.ymin)) for b in annotation.boxes]
        images.append(LabelledImage(str(annotation.image_id), int(width), int(height), boxes))
    return images


def _to_annotation_set(images: Iterable[LabelledImage]) -> Any:
    from globox import Annotation, AnnotationSet, BoundingBox

    annotations = AnnotationSet()
    for image in images:
        boxes = [
            BoundingBox(label=label, xmin=left, ymin=top, xmax=left + width, ymax=top + height)
            for label, (left, top, width, height) in image.boxes
        ]
        annotations.add(Annotation(image_id=image.name, image_size=(image.width, image.height), boxes=boxes))
    return annotations


def _image_dir(root: Path) -> Path:
    return root / "images" if (root / "images").is_dir() else root


def read_coco(path: Path) -> ReadResult:
    """``annotations.json`` (or PATH itself when a .json file); images beside it or under images/."""
    from globox import AnnotationSet

    file = path if path.is_file() else _first(path, ("annotations.json", "coco.json", "instances.json"))
    root = file.parent
    try:
        annotations = AnnotationSet.from_coco(file)
    except (json.JSONDecodeError, KeyError, ValueError, AssertionError, TypeError) as exc:
        return ReadResult([], [FormatError(file.name, "coco-format", f"{type(exc).__name__}: {exc}")], root)
    return ReadResult(_from_annotations(annotations), [], _image_dir(root))


def read_yolo(path: Path) -> ReadResult:
    """``classes.txt`` (or ``obj.names``), ``labels/<image>.txt`` and ``images/<image>``."""
    from globox import Annotation

    names_file = _first(path, ("classes.txt", "obj.names"))
    labels = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    label_dir = path / "labels" if (path / "labels").is_dir() else path
    image_dir = _image_dir(path)
    images: list[LabelledImage] = []
    errors: list[FormatError] = []
    by_stem = {p.stem: p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
    for text in sorted(label_dir.glob("*.txt")):
        if text == names_file:
            continue
        image = by_stem.get(text.stem)
        if image is None:
            errors.append(FormatError(text.name, "image-missing", f"no image named {text.stem}.* in {image_dir}"))
            continue
        try:
            size = _image_size(image)
            annotation = Annotation.from_yolo_darknet(text, image_size=size, image_extension=image.suffix)
            parsed = _from_annotations([annotation])[0]
            parsed.boxes = [(labels[int(label)], box) for label, box in parsed.boxes]
        except IndexError:
            errors.append(FormatError(text.name, "class-id", f"a class id is not in {names_file.name}"))
            continue
        except Exception as exc:  # noqa: BLE001 - globox raises several kinds; each is reported by file
            errors.append(FormatError(text.name, "yolo-format", f"{type(exc).__name__}: {exc}"))
            continue
        parsed.name = str(image.relative_to(image_dir))
        images.append(parsed)
    return ReadResult(images, errors, image_dir)


def read_voc(path: Path) -> ReadResult:
    """``annotations/*.xml`` (or ``Annotations/``, or PATH itself) and images under images/ (or
    JPEGImages/)."""
    from globox import Annotation

    xml_dir = next((path / d for d in ("annotations", "Annotations") if (path / d).is_dir()), path)
    image_dir = next((path / d for d in ("images", "JPEGImages") if (path / d).is_dir()), path)
    images, errors = [], []
    for xml in sorted(xml_dir.glob("*.xml")):
        try:
            images.extend(_from_annotations([Annotation.from_pascal_voc(xml)]))
        except Exception as exc:  # noqa: BLE001 - reported per file
            errors.append(FormatError(xml.name, "voc-format", f"{type(exc).__name__}: {exc}"))
    return ReadResult(images, errors, image_dir)


def write_coco(images: list[LabelledImage], out: Path) -> Path:
    labels = sorted({label for image in images for label, _ in image.boxes})
    target = out / "annotations.json"
    _to_annotation_set(images).save_coco(
        target,
        label_to_id={label: i + 1 for i, label in enumerate(labels)},
        imageid_to_id={image.name: i + 1 for i, image in enumerate(images)},
    )
    return target


def write_yolo(images: list[LabelledImage], out: Path) -> Path:
    labels = sorted({label for image in images for label, _ in image.boxes})
    (out / "classes.txt").write_text("".join(f"{label}\n" for label in labels))
    _to_annotation_set(images).save_yolo_darknet(out / "labels", label_to_id={x: i for i, x in enumerate(labels)})
    return out / "labels"


def write_voc(images: list[LabelledImage], out: Path) -> Path:
    _to_annotation_set(images).save_pascal_voc(out / "annotations")
    return out / "annotations"


# --- Label Studio ------------------------------------------------------------------------------------
class _LsValue(BaseModel):
    model_config = ConfigDict(extra="allow")
    x: float
    y: float
    width: float
    height: float
    rectanglelabels: list[str]


class _LsResult(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    original_width: int
    original_height: int
    value: dict[str, Any]


class _LsAnnotation(BaseModel):
    model_config = ConfigDict(extra="allow")
    result: list[_LsResult] = []
    was_cancelled: bool = False


class _LsTask(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: dict[str, Any]
    annotations: list[_LsAnnotation] = []


def _ls_image_name(ref: str) -> str:
    """Label Studio's image references: ``/data/local-files/?d=dir/a.png``, ``/data/upload/1/x-a.png``,
    a URL or a plain path; the name is resolved against the image folder."""
    if "?d=" in ref:
        ref = unquote(ref.split("?d=", 1)[1])
    return PurePosixPath(ref).name if ref.startswith(("/data/", "http://", "https://")) else ref


def read_labelstudio(path: Path) -> ReadResult:
    """A Label Studio JSON export (a list of tasks) with rectangle labels; the last annotation that was
    not cancelled counts."""
    file = path if path.is_file() else _first(path, ("tasks.json", "export.json", "result.json"))
    root = file.parent
    try:
        tasks = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        return ReadResult([], [FormatError(file.name, "json", str(exc))], root)
    images: list[LabelledImage] = []
    errors: list[FormatError] = []
    for number, raw in enumerate(tasks if isinstance(tasks, list) else [], start=1):
        where = f"{file.name}#{number}"
        try:
            task = _LsTask.model_validate(raw)
        except ValidationError as exc:
            errors.append(FormatError(where, "labelstudio-format", str(exc.errors()[0]["msg"])))
            continue
        ref = next((v for v in task.data.values() if isinstance(v, str)), None)
        done = [a for a in task.annotations if not a.was_cancelled]
        if ref is None or not done:
            errors.append(FormatError(where, "labelstudio-format", "no image reference or no annotation"))
            continue
        rects = [r for r in done[-1].result if r.type == "rectanglelabels"]
        if not rects:
            errors.append(FormatError(where, "labelstudio-format", "no rectanglelabels result"))
            continue
        width, height = rects[0].original_width, rects[0].original_height
        boxes: list[tuple[str, Box]] = []
        for rect in rects:
            value = _LsValue.model_validate(rect.value)
            left, top = value.x * width / 100, value.y * height / 100
            size = (value.width * width / 100, value.height * height / 100)
            boxes.extend((label, (left, top, *size)) for label in value.rectanglelabels)
        images.append(LabelledImage(_ls_image_name(ref), width, height, boxes))
    return ReadResult(images, errors, _image_dir(root))


def write_labelstudio(images: list[LabelledImage], out: Path) -> Path:
    tasks = []
    for number, image in enumerate(images, start=1):
        results = [
            {
                "id": f"r{number}-{i}",
                "type": "rectanglelabels",
                "from_name": "label",
                "to_name": "image",
                "original_width": image.width,
                "original_height": image.height,
                "image_rotation": 0,
                "value": {
                    "x": left * 100 / image.width,
                    "y": top * 100 / image.height,
                    "width": width * 100 / image.width,
                    "height": height * 100 / image.height,
                    "rotation": 0,
                    "rectanglelabels": [label],
                },
            }
            for i, (label, (left, top, width, height)) in enumerate(image.boxes)
        ]
        tasks.append({"id": number, "data": {"image": f"images/{image.name}"}, "annotations": [{"result": results}]})
    target = out / "tasks.json"
    target.write_text(json.dumps(tasks, indent=1))
    return target


# --- manifests ---------------------------------------------------------------------------------------
def read_manifest_file(path: Path) -> ReadResult:
    """A JSON Lines manifest of object-detection lines; ``source-ref`` an s3:// URI or a path relative
    to the manifest's folder."""
    from hitl.domain.manifest import DetectionLine, parse_line

    file = path if path.is_file() else _first(path, ("manifest.jsonl", "output.manifest", "manifest.json"))
    images, errors = [], []
    for number, text in enumerate(file.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = parse_line(text)
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(FormatError(f"{file.name}:{number}", "line-format", str(exc)[:300]))
            continue
        if not isinstance(line, DetectionLine):
            errors.append(FormatError(f"{file.name}:{number}", "line-format", "not an object-detection line"))
            continue
        size = line.labels.image_size[0]
        boxes = [(name, (b.left, b.top, b.width, b.height)) for name, b in line.boxes()]
        images.append(LabelledImage(line.source_ref, size.width, size.height, boxes))
    return ReadResult(images, errors, file.parent)


def write_manifest_file(images: list[LabelledImage], out: Path) -> Path:
    from hitl.domain.manifest import detection_line

    labels = sorted({label for image in images for label, _ in image.boxes})
    class_map = {str(i): label for i, label in enumerate(labels)}
    target = out / "manifest.jsonl"
    with target.open("w") as handle:
        for image in images:
            line = detection_line(f"images/{image.name}", image.width, image.height, image.boxes, class_map)
            handle.write(line.to_json() + "\n")
    return target


READERS = {
    "manifest": read_manifest_file,
    "coco": read_coco,
    "yolo": read_yolo,
    "voc": read_voc,
    "labelstudio": read_labelstudio,
}
WRITERS = {
    "manifest": write_manifest_file,
    "coco": write_coco,
    "yolo": write_yolo,
    "voc": write_voc,
    "labelstudio": write_labelstudio,
}


def read(path: Path, fmt: Format) -> ReadResult:
    return READERS[fmt](path)


def write(images: list[LabelledImage], out: Path, fmt: Format) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return WRITERS[fmt](images, out)


# --- helpers -----------------------------------------------------------------------------------------
def _first(folder: Path, names: Iterable[str]) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"none of {', '.join(names)} in {folder}")


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return int(image.width), int(image.height)
