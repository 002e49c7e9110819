"""Deterministic benchmark data built from third-party pixels that ship inside installed wheels.

Detection scenes paste ``skimage.data.lfw_subset()`` faces (the label) and non-face patches
(distractors) onto scikit-image's and scikit-learn's bundled photos; image-level sets are LFW face /
non-face, Fashion-MNIST (Debian's ``dataset-fashion-mnist``) and scikit-learn's digits. Train and test
splits draw on disjoint faces, distractors, backgrounds and images, so a test figure is never measured
on training pixels.
"""

from hitl.scenes.classification import ImageSet, digits_set, face_nonface_set, fashion_mnist_set
from hitl.scenes.detection import Scene, generate_scene, generate_scenes, scene_examples
from hitl.scenes.sources import Split
from hitl.scenes.upload import upload_set

__all__ = [
    "ImageSet",
    "Scene",
    "Split",
    "digits_set",
    "face_nonface_set",
    "fashion_mnist_set",
    "generate_scene",
    "generate_scenes",
    "scene_examples",
    "upload_set",
]
