"""Images of the tests' own object classes (not the demo's faces): "ring" and "tile" drawn on
textured backgrounds, with their true boxes. Pure functions of (index, seed)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 320, 240
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ObjectScene:
    name: str
    png: bytes
    boxes: list[tuple[str, Box]]


def scene(index: int, seed: int = 0, labels: tuple[str, ...] = ("ring",)) -> ObjectScene:
    rng = np.random.default_rng([seed, index])
    base = rng.integers(60, 200, size=3)
    noise = rng.normal(0, 28, size=(HEIGHT // 8, WIDTH // 8, 3))
    background = np.clip(base + np.kron(noise, np.ones((8, 8, 1))), 0, 255).astype(np.uint8)
    image = Image.fromarray(background).filter(ImageFilter.GaussianBlur(2))
    draw = ImageDraw.Draw(image)
    boxes: list[tuple[str, Box]] = []
    for label in labels:
        side = int(rng.integers(50, 90))
        for _ in range(20):
            left, top = int(rng.integers(5, WIDTH - side - 5)), int(rng.integers(5, HEIGHT - side - 5))
            if all(_apart((left, top, side, side), b) for _, b in boxes):
                break
        if label == "ring":
            draw.ellipse((left, top, left + side - 1, top + side - 1), outline=(240, 120, 20), width=max(6, side // 6))
        else:
            corners = (left, top, left + side - 1, top + side - 1)
            draw.rectangle(corners, fill=(30, 60, 200), outline=(250, 250, 250), width=4)
        boxes.append((label, (float(left), float(top), float(side), float(side))))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return ObjectScene(f"{'-'.join(labels)}-{seed}-{index:03d}", buffer.getvalue(), boxes)


def _apart(a: Box, b: Box) -> bool:
    return a[0] + a[2] < b[0] or b[0] + b[2] < a[0] or a[1] + a[3] < b[1] or b[1] + b[3] < a[1]
