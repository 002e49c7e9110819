"""The frozen ImageNet feature extractor, run by onnxruntime.

The graph takes float32 N×3×H×W pixels in 0–255 and returns three maps: ``s16`` (stride 16),
``s32`` and ``emb`` (stride 32; 1280 channels). Two networks ship in ``assets/`` as int8
quantizations (``deploy/model/quantize_backbone.py``) of their exports (fp16 weights, fp32 compute),
1.6–2 times as fast on CPU:

- EfficientNet-Lite0 (``efficientnet_lite0_features.int8.onnx``, from
  ``deploy/model/export_efficientnet_lite.py``; s16 has 112 channels, s32 320), which new models are
  trained on;
- MobileNetV2 (``mobilenet_v2_features.int8.onnx``, and its export ``mobilenet_v2_features.onnx``,
  which the oldest versions run on; ``deploy/model/export_backbone.py``; s16 has 96 channels, s32
  320), which earlier versions were trained on.

A model is always run on the build it was trained on (its artifact names it), because a head fitted
on one build's maps does not fit another's.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

ASSETS = Path(__file__).resolve().parent / "assets"
BUILDS = {
    "efficientnet_lite0_int8": ASSETS / "efficientnet_lite0_features.int8.onnx",
    "mobilenet_v2_int8": ASSETS / "mobilenet_v2_features.int8.onnx",
    "mobilenet_v2_fp16": ASSETS / "mobilenet_v2_features.onnx",
}
# Each int8 build whose export ships too: the export it was quantized from. (Lite0's export is not
# committed: `make model-backbone` writes it only to derive the int8 file.)
QUANTIZED_FROM = {"mobilenet_v2_int8": "mobilenet_v2_fp16"}
# What (re)creates each build's file when it is missing.
BUILT_BY = {
    "efficientnet_lite0_int8": "make model-quantize (deploy/model/quantize_backbone.py)",
    "mobilenet_v2_int8": "make model-quantize (deploy/model/quantize_backbone.py)",
    "mobilenet_v2_fp16": "make model-backbone (deploy/model/export_backbone.py)",
}
# Each build's file by its SHA-256: a version runs on the very weights it was trained on, so a file
# that was rebuilt with other bytes (another quantizer, another export) is refused, not run. A new
# network or export is a new build, with its own name.
DIGESTS = {
    "efficientnet_lite0_int8": "076caea0ee1c6d971f8d4ed7ddfceb1d189c021ba1c0ca69d10a65c2b7753ae3",
    "mobilenet_v2_int8": "80a1711b547ec88c2b4383780f04d166bf15f928e36e06868b1aa9945b4a1295",
    "mobilenet_v2_fp16": "c05a6e469990eda46c6cfaf502741ccc5ef8181f44bf6ad721c1c5309a238965",
}
DEFAULT_BUILD = "efficientnet_lite0_int8"
# An artifact that names no build predates the names: it was trained on MobileNetV2's export.
LEGACY_BUILD = "mobilenet_v2_fp16"
# The ImageNet mean colour: padding with it reads as zero after the graph's normalisation.
PAD_VALUE = (124.0, 116.0, 104.0)
STRIDE = 32


@dataclass(frozen=True)
class FeatureMaps:
    s16: np.ndarray  # C16×H/16×W/16
    s32: np.ndarray  # C32×H/32×W/32
    scale: float  # resized size / original size
    height: int  # of the resized (unpadded) image
    width: int


class Backbone:
    """One onnxruntime session of one build; ``run`` is safe to call from several threads."""

    def __init__(self, build: str = DEFAULT_BUILD, threads: int = 0) -> None:
        path = BUILDS.get(build)
        if path is None:
            raise ValueError(f"unknown backbone build {build!r}: this code has {', '.join(sorted(BUILDS))}")
        if not path.exists():
            raise FileNotFoundError(f"backbone ONNX file missing: {path} (built by {BUILT_BY[build]})")
        graph = path.read_bytes()
        digest = hashlib.sha256(graph).hexdigest()
        if digest != DIGESTS[build]:
            raise ValueError(
                f"backbone file {path} is not build {build!r}: SHA-256 {digest}, expected {DIGESTS[build]}. "
                "Models trained on this build need its own weights: restore the file from the repository."
            )
        self.build = build  # the name an artifact trained on these maps records
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: workers share two cores with other processes
        # (measured: ≈ 13 % less CPU per image for ≈ 1 ms more latency).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        # Channels of the pooled embedding (emb, s32, s16), read from the graph's declared outputs.
        declared = {out.name: out.shape[1] for out in self._session.get_outputs()}
        self.embedding_size = sum(int(declared[name]) for name in ("emb", "s32", "s16"))

    def maps(self, image: np.ndarray, long_side: int) -> FeatureMaps:
        """Resize so the long side is ``long_side``, pad to a multiple of 32, run the backbone."""
        height, width = image.shape[:2]
        scale = long_side / max(height, width)
        rh, rw = max(1, round(height * scale)), max(1, round(width * scale))
        batch = _to_batch([_resize(image, rw, rh)], _ceil(rh), _ceil(rw))
        s16, s32 = self._session.run(["s16", "s32"], {"pixels": batch})
        return FeatureMaps(s16=s16[0], s32=s32[0], scale=scale, height=rh, width=rw)

    def crop_maps(self, crops: Sequence[np.ndarray], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s16, s32, emb) maps of equal-sized crops, batched (N×C×h×w each)."""
        parts: list[list[np.ndarray]] = [[], [], []]
        for start in range(0, len(crops), batch_size):
            chunk = list(crops[start : start + batch_size])
            h, w = chunk[0].shape[:2]
            batch = _to_batch([_resize(c, w, h) for c in chunk], h, w)
            outputs = self._session.run(["s16", "s32", "emb"], {"pixels": batch})
            for part, out in zip(parts, outputs, strict=True):
                part.append(out)
        s16, s32, emb = (np.concatenate(part) for part in parts)
        return s16, s32, emb

    def embed(self, images: Sequence[np.ndarray], size: int, batch_size: int = 32) -> np.ndarray:
        """Global image embeddings (N×``embedding_size``): each map averaged over the image, for image labels."""
        out = []
        for start in range(0, len(images), batch_size):
            chunk = [_resize(im, size, size) for im in images[start : start + batch_size]]
            s16, s32, emb = self._session.run(["s16", "s32", "emb"], {"pixels": _to_batch(chunk, size, size)})
            out.append(np.concatenate([emb.mean(axis=(2, 3)), s32.mean(axis=(2, 3)), s16.mean(axis=(2, 3))], axis=1))
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.embedding_size), np.float32)


def _ceil(n: int) -> int:
    return -(-n // STRIDE) * STRIDE


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    if image.shape[0] == height and image.shape[1] == width:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def _to_batch(images: list[np.ndarray], height: int, width: int) -> np.ndarray:
    batch = np.empty((len(images), 3, height, width), np.float32)
    batch[:] = np.asarray(PAD_VALUE, np.float32)[None, :, None, None]
    for i, im in enumerate(images):
        batch[i, :, : im.shape[0], : im.shape[1]] = im.transpose(2, 0, 1)
    return batch


_shared: dict[str, Backbone] = {}
_shared_lock = threading.Lock()
_shared_threads = 0


def set_shared_threads(threads: int) -> None:
    """Threads of the process's model: the backbone's intra-op threads (0: onnxruntime's default, every
    core), for the session created next, so call it before the first prediction; and, when ``threads``
    is set, the BLAS and OpenMP pools loaded so far (:func:`limit_math_threads`)."""
    global _shared_threads
    with _shared_lock:
        _shared_threads = max(0, threads)
    if threads > 0:
        limit_math_threads(threads)


def limit_math_threads(threads: int) -> None:
    """At most ``threads`` threads in each BLAS and OpenMP pool loaded in the process: numpy's, which
    the heads use at inference. Their default is one per core of the machine (not of the container's
    CPU limit), so each worker process started that many, and the idle ones spin: with 2 processes on
    2 cores, a process took 2 cores' time for 1 core's predictions."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def shared_backbone(build: str = DEFAULT_BUILD) -> Backbone:
    """The process's backbone of that build, loaded once (≈ 0.3 s) and shared by every model version
    trained on it."""
    with _shared_lock:
        found = _shared.get(build)
        if found is None:
            found = _shared[build] = Backbone(build, threads=_shared_threads)
        return found
