"""Quantize the exported backbone to int8 (the file the model runs): about 1.6× faster on CPU.

Runs in the throwaway export venv (onnx, onnxruntime's quantization tools, scikit-image's bundled photos):

    python -m venv .venv-quantize
    .venv-quantize/bin/pip install onnx onnxruntime sympy scikit-image
    .venv-quantize/bin/python deploy/model/quantize_backbone.py \\
        shared/hitl/model/assets/mobilenet_v2_features.onnx shared/hitl/model/assets/mobilenet_v2_features.int8.onnx

Static QDQ quantization: int8 weights per output channel, uint8 activations whose ranges are the
99.999th percentiles seen on calibration images. The calibration images are the photos bundled in the
scikit-image wheel, whole and as a zoomed-in centre square. The heads are fitted on the
quantized backbone's maps, so training and inference see the same features.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

# Bundled in the scikit-image wheel (skimage/data), so nothing is downloaded.
CALIBRATION_PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "horse", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
)  # fmt: skip
INPUT_SIZE = (640, 480)


def calibration_images() -> list[np.ndarray]:
    import skimage.data

    out = []
    for name in CALIBRATION_PHOTOS:
        image = np.asarray(getattr(skimage.data, name)())
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).astype(np.uint8) if image.max() <= 1 else image.astype(np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        out.append(np.ascontiguousarray(image[..., :3]))
    return out


def batches(images: list[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
    """Each photo whole and its centre square, both at the detector's 640×480 (the percentile
    calibrator needs one input shape): ranges for the whole-image pass and for the zoomed-in crops."""
    for image in images:
        height, width = image.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        for view in (image, image[top : top + side, left : left + side]):
            pixels = np.asarray(Image.fromarray(view).resize(INPUT_SIZE), np.float32).transpose(2, 0, 1)[None]
            yield {"pixels": np.ascontiguousarray(pixels)}


class Calibration(CalibrationDataReader):  # type: ignore[misc]  # untyped outside the export venv
    def __init__(self, images: list[np.ndarray]) -> None:
        self._batches = batches(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def fp32_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """The export stores weights as fp16 behind Cast nodes; quantization wants them as fp32 constants."""
    graph = model.graph
    stored = {init.name: init for init in graph.initializer}
    kept = []
    for node in graph.node:
        source = stored.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if source is not None and source.data_type == onnx.TensorProto.FLOAT16:
            weights = numpy_helper.to_array(source).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(weights, node.output[0]))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    live = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    return model


def main(source: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        fp32, prepared = Path(work) / "fp32.onnx", Path(work) / "prepared.onnx"
        onnx.save(fp32_initializers(onnx.load(str(source))), str(fp32))
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(out),
            Calibration(calibration_images()),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
        )
    onnx.checker.check_model(onnx.load(str(out)))
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: quantize_backbone.py SOURCE.onnx OUT.int8.onnx")
    main(Path(sys.argv[1]), Path(sys.argv[2]))
