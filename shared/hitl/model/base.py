"""The contract between the detector (and trainer) and any model implementation."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from hitl.domain.records import Prediction


class Predictor(Protocol):
    """A loaded, immutable model version."""

    @property
    def version(self) -> str: ...

    def predict(self, image: np.ndarray) -> list[Prediction]:
        """``image``: H×W×3 uint8 RGB. Returns labels with confidence 0–100, sorted by confidence."""
        ...
