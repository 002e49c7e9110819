"""Artifacts as another writer (an older version of this code) would have made them."""

from __future__ import annotations

import io
import json

import numpy as np

from hitl.model.artifact import HEADER, ModelArtifact


def with_header(artifact: ModelArtifact, **changes: object) -> bytes:
    """The artifact's bytes with header keys set (``None``: removed)."""
    with np.load(io.BytesIO(artifact.to_bytes()), allow_pickle=False) as npz:
        payload = {k: npz[k] for k in npz.files}
    header = json.loads(payload[HEADER].tobytes().decode())
    for key, value in changes.items():
        if value is None:
            header.pop(key, None)
        else:
            header[key] = value
    payload[HEADER] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez_compressed(out, **payload)  # type: ignore[arg-type]
    return out.getvalue()
