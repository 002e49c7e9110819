"""Training holds a bounded number of decoded images, whatever the dataset's size (images in moto's S3)."""

from __future__ import annotations

import json
import weakref
from typing import Any

import boto3
import numpy as np
import pytest

from hitl.model.data import S3Images
from hitl.model.training import train, train_from_manifest
from hitl.scenes import generate_scenes, scene_examples, upload_set

BUCKET = "hitl-train-memory"
TRAIN, TEST, KEEP = 14, 6, 3


class CountingImages(S3Images):
    """S3Images that counts its decoded images still alive anywhere in the process (weak references)."""

    def __init__(self, client: Any, keep: int) -> None:
        super().__init__(client, keep=keep)
        self.alive: dict[int, weakref.ref[np.ndarray]] = {}  # arrays are unhashable: keyed by id
        self.peak = 0

    def image(self, uri: str) -> np.ndarray:
        pixels = super().image(uri)
        key = id(pixels)
        if key not in self.alive:
            self.alive[key] = weakref.ref(pixels, lambda _, k=key: self.alive.pop(k, None))  # type: ignore[misc]
        self.peak = max(self.peak, len(self.alive))
        return pixels


@pytest.fixture(scope="module")
def s3(moto_endpoint: str) -> Any:
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def test_training_keeps_only_a_bounded_number_of_decoded_images(s3: Any) -> None:
    prefix = f"s3://{BUCKET}/images/"
    train_files = generate_scenes("train", TRAIN, source_prefix=prefix)
    test_files = generate_scenes("test", TEST, source_prefix=prefix)
    upload_set(train_files + test_files, f"s3://{BUCKET}/manifest.jsonl", client=s3)
    images = CountingImages(s3, keep=KEEP)

    result = train_from_manifest(
        [json.dumps(line) for _, line in train_files],
        images.image,
        test_lines=[json.dumps(line) for _, line in test_files],
        images=images.info,
    )

    assert result.artifact.info["train_images"] == TRAIN
    assert images.kept() <= KEEP
    # The cache, the image being worked on and its mirror's source: never the whole set.
    assert images.peak <= KEEP + 2, f"{images.peak} decoded images were alive at once ({TRAIN + TEST} in the set)"
    assert images.fetches > TRAIN + TEST, "images were fetched again once evicted (the cost of the bound)"

    # On demand or all in memory, the same images in the same order train the same model.
    held = train(scene_examples("train", TRAIN, source_prefix=prefix))
    assert np.array_equal(result.artifact.arrays["w16"], held.arrays["w16"])
    assert np.array_equal(result.artifact.arrays["bias"], held.arrays["bias"])
